"""The micro-batcher that lets sources share network batches, and the pipeline built on it."""

import threading
import time

import numpy as np
import pytest

from facexray.batcher import MicroBatcher
from facexray.engines.xray import load_xray
from facexray.faces.detect import RetinaFaceDetector
from facexray.pipeline import Pipeline, PipelineConfig


class _Recorder:
    def __init__(self, delay: float = 0.0):
        self.batches, self.delay = [], delay

    def __call__(self, items):
        self.batches.append(list(items))
        time.sleep(self.delay)
        return [x * 10 for x in items]


def test_results_in_order_and_batches_bounded():
    fn = _Recorder()
    b = MicroBatcher(fn, max_batch=3, max_wait_s=10, name="t")
    futs = b.submit_many(range(8))
    assert [b.result(f) for f in futs] == [x * 10 for x in range(8)]
    b.close()
    assert max(map(len, fn.batches)) <= 3 and sum(map(len, fn.batches)) == 8
    assert sorted(x for batch in fn.batches for x in batch) == list(range(8))


def test_threads_share_batches():
    fn = _Recorder(delay=0.05)
    b = MicroBatcher(fn, max_batch=8, max_wait_s=0.5, name="t")
    out, both_submitted = {}, threading.Barrier(2)

    def source(base):
        futs = [b.submit(base + i) for i in range(4)]
        both_submitted.wait()
        out[base] = [b.result(f) for f in futs]

    threads = [threading.Thread(target=source, args=(base,)) for base in (100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    assert out == {100: [1000, 1010, 1020, 1030], 200: [2000, 2010, 2020, 2030]}
    assert any({x // 100 for x in batch} == {1, 2} for batch in fn.batches)        # one batch, both sources


def test_partial_batch_waits_at_most_max_wait_and_a_blocked_caller_cuts_it():
    b = MicroBatcher(_Recorder(), max_batch=64, max_wait_s=0.2, name="t")
    t0 = time.monotonic()
    fut = b.submit(1)
    assert fut.result(timeout=5) == 10
    assert 0.15 <= time.monotonic() - t0 < 2.0
    b.close()

    b = MicroBatcher(_Recorder(), max_batch=64, max_wait_s=3600, name="t")
    t0 = time.monotonic()
    assert b.result(b.submit(2)) == 20
    assert time.monotonic() - t0 < 1.0
    b.close()


def test_a_failing_batch_fails_its_futures_and_the_worker_goes_on():
    def fn(items):
        if 13 in items:
            raise ValueError("unlucky batch")
        return items

    b = MicroBatcher(fn, max_batch=2, max_wait_s=10, name="t")
    bad = b.submit_many([12, 13])
    with pytest.raises(ValueError, match="unlucky"):
        b.result(bad[0])
    with pytest.raises(ValueError):
        b.result(bad[1])
    assert b.result(b.submit(14)) == 14
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)


class _ShapeRecorder:
    """Wraps the real detector and records the frame shapes of every batch it is given.

    After `hold_next_s` is set, the next batch takes that much longer, so that the
    other sources' frames queue behind it however late their threads start.
    """

    def __init__(self, detector):
        self.detector, self.batches, self.hold_next_s = detector, [], 0.0

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def detect(self, images):
        self.batches.append({im.shape for im in images})
        time.sleep(self.hold_next_s)
        self.hold_next_s = 0.0
        return self.detector.detect(images)


def test_concurrent_sources_score_as_they_do_alone(shared_dir, models_dir):
    """Three videos scored at once from three threads share detector batches and still get their own scores."""
    clips = [shared_dir / "data/real_videos/lia/data__vox__driving2.mp4",                    # 256x256
             shared_dir / "data/real_videos/facenet_pytorch/examples__video.mp4",             # 1920x1080
             shared_dir / "data/real_videos/v_express/scripts__prepare_dataset__RD_Radio10_0_clip_0.mp4"]  # 512²
    detector = _ShapeRecorder(RetinaFaceDetector(
        models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth"))
    # A source keeps 8 frames in flight and cuts the pending batch when it blocks on them. While the first
    # source's batch is held, the other two queue their frames and block, so the next batch holds both.
    # (Two sources alone settle into taking turns: each one's frames are cut while the other's run.)
    with Pipeline(detector, load_xray("random"), PipelineConfig(sample="every=5", batch_wait_ms=60_000,
                                                                 detect_batch=32, inflight_frames=8)) as pipe:
        alone = [pipe.run(c) for c in clips]
        assert all(len(shapes) == 1 for shapes in detector.batches)
        detector.hold_next_s = 1.0
        together: dict = {}
        threads = [threading.Thread(target=lambda c=c: together.__setitem__(c, pipe.run(c))) for c in clips]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert any(len(shapes) >= 2 for shapes in detector.batches)                # a batch held frames of two
    for c, a in zip(clips, alone):
        t = together[c]
        assert t.result.error is None and t.result.faces_scored == a.result.faces_scored > 0
        assert [s.face.track_id for s in t.scores] == [s.face.track_id for s in a.scores]
        np.testing.assert_allclose([s.prob for s in t.scores], [s.prob for s in a.scores], atol=1e-5)
        assert t.result.score == pytest.approx(a.result.score, abs=1e-5)


def test_inflight_one_yields_each_frame_before_taking_the_next(shared_dir, models_dir):
    """Live sources score frame by frame: with inflight=1 no frame waits for its successor."""
    from facexray.decode import open_video

    with open_video(shared_dir / "data/real_videos/lia/data__vox__driving2.mp4", "every=50") as r:
        frames = list(r)
    pulled = []

    def source():
        for f in frames:
            pulled.append(f.index)
            yield f

    detector = RetinaFaceDetector(models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth")
    with Pipeline(detector, load_xray("random"), PipelineConfig(batch_wait_ms=60_000)) as pipe:
        seen = [(r.frame.index, list(pulled)) for r in pipe.score_frames(source(), inflight=1)]
    assert len(seen) == len(frames) >= 3
    assert all(pulled_then[-1] == index for index, pulled_then in seen)
