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
