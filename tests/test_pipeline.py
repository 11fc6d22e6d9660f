"""The pipeline on real videos: batching bounds, counts, tracks and timings."""

import numpy as np
import pytest

from facexray.engines.xray import load_xray
from facexray.faces.detect import RetinaFaceDetector
from facexray.pipeline import Pipeline, PipelineConfig


class _BatchRecorder:
    """Wraps the real X-ray runner and records the batch sizes it is given."""

    def __init__(self, runner):
        self.runner, self.sizes = runner, []

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def __call__(self, crops):
        self.sizes.append(len(crops))
        return self.runner(crops)


@pytest.fixture(scope="module")
def detector(models_dir):
    return RetinaFaceDetector(models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth")


def test_xray_batches_never_exceed_the_configured_size(shared_dir, detector):
    clip = shared_dir / "data/real_videos/facenet_pytorch/examples__video.mp4"     # several faces per frame
    rec = _BatchRecorder(load_xray("random"))
    # with a wait this long, only the source itself (blocked on its last crops) cuts a batch short
    out = Pipeline(detector, rec, PipelineConfig(sample="uniform=16", xray_batch=5, batch_wait_ms=60_000)).run(clip)
    assert out.result.error is None
    assert out.result.faces_scored == sum(rec.sizes) == len(out.scores) > 16      # more faces than frames
    assert max(rec.sizes) <= 5 and rec.sizes.count(5) >= len(rec.sizes) - 1


def test_pipeline_counts_tracks_and_maps(shared_dir, detector):
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"              # one talking head
    out = Pipeline(detector, load_xray("random"), PipelineConfig(sample="every=10")).run(clip)
    r = out.result
    assert r.error is None and r.frames_scored == 23 and r.frames_with_faces == 23    # 221 frames, every 10th
    assert r.tracks == 1 and {s.face.track_id for s in out.scores} == {0}
    assert all(s.xray.shape == (64, 64) and 0 <= s.xray.min() and s.xray.max() <= 1 for s in out.scores)
    pts = [s.face.pts for s in out.scores]
    assert pts == sorted(pts) and np.allclose(np.diff(pts), 10 / 25, atol=1e-3)
    assert r.timings["total_s"] >= r.timings["xray_s"] > 0 and r.timings["detect_s"] > 0


def test_a_skipped_frame_takes_its_neighbours_faces_moved_linearly_in_time():
    from facexray.contracts import Face, Frame
    from facexray.pipeline import _between

    lm = np.arange(10, dtype=np.float32).reshape(5, 2)
    before = [Face(0, 0.0, np.array([0, 0, 10, 10], np.float32), 0.9, lm, 3),
              Face(0, 0.0, np.array([50, 50, 60, 60], np.float32), 0.8, lm + 50, 4)]
    after = [Face(4, 0.4, np.array([4, 0, 14, 10], np.float32), 0.95, lm + [4, 0], 3)]   # track 4 is gone
    [moved, held] = _between(before, after, Frame("s", 1, 0.1, None))
    assert (moved.frame_index, moved.pts, moved.track_id, moved.score) == (1, 0.1, 3, 0.9)
    assert np.allclose(moved.box, [1, 0, 11, 10]) and np.allclose(moved.landmarks, lm + [1, 0])   # a quarter of the way
    assert held.track_id == 4 and np.array_equal(held.box, before[1].box) and held.pts == 0.1
    assert _between(before, [], Frame("s", 1, 0.1, None))[0].box.tolist() == [0, 0, 10, 10]


def test_the_detection_interval_halves_detector_work_on_a_dense_scan_and_keeps_faces_and_verdict(shared_dir, detector):
    from dataclasses import replace

    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"              # 221 frames at 25 fps, one face
    xray = load_xray(None, engine="onnxruntime")
    runs = {}
    for interval in (0.0, 0.05):
        frames_detected = []
        pipe = Pipeline(detector, xray, PipelineConfig(sample="all", detect_interval_s=interval),
                        observer=lambda stage, n, s, seen=frames_detected: seen.append(n) if stage == "detect" else None)
        with pipe:
            runs[interval] = (pipe.run(clip), sum(frames_detected))
    (every, n_every), (half, n_half) = runs[0.0], runs[0.05]
    assert n_every == 221 and n_half == 111                                         # frames 0, 2, 4, … 220
    for r in (every.result, half.result):
        assert (r.error, r.frames_scored, r.frames_with_faces, r.faces_scored, r.tracks) == (None, 221, 221, 221, 1)
    # a skipped frame's face lies where the detector would have found it: about a pixel away (faces ~100 px)
    shift = [np.abs(a.face.landmarks - b.face.landmarks).mean() for a, b in zip(every.scores, half.scores)]
    assert np.allclose(shift[::2], 0) and np.mean(shift[1::2]) < 1.5, np.mean(shift[1::2])
    # its score moves less than a face's score moves from one frame to the next anyway (0.025 vs 0.037 here)
    p_every, p_half = (np.array([s.prob for s in r.scores]) for r in (every, half))
    assert np.abs(p_every - p_half)[1::2].mean() < np.abs(np.diff(p_every)).mean()
    # and the video score moves less than picking other frames moves it: the top-5 mean of the even frames
    # and of the odd ones differ by 0.08 on this clip; with skipping, 0.03
    assert abs(every.result.score - half.result.score) < 0.05
    assert replace(PipelineConfig(), detect_interval_s=0.05) == PipelineConfig()       # the default
