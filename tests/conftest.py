"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

import livestreams

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `shared/` folder beside the repository (real videos, faces, benchmark files); skips the test when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def models_dir(shared_dir) -> Path:
    """The shared third-party face models; skips when absent."""
    p = shared_dir / "models"
    if not (p / "retinaface_mnet025").is_dir():
        pytest.skip(f"face detector weights not found under {p}")
    return p


@pytest.fixture
def detector_weights(models_dir, monkeypatch) -> Path:
    """Points FACEXRAY_MODELS at the shared models, as a user's set-up would, for one test."""
    monkeypatch.setenv("FACEXRAY_MODELS", str(models_dir))
    return models_dir


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test exports ONNX into a cache of this test session, never the user's."""
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path_factory.getbasetemp() / "facexray-cache"))


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip without a CUDA device, `tensorrt` tests without TensorRT (or without CUDA)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    trt = cuda and importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (torch sees none)"))
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and a CUDA device"))


@pytest.fixture(scope="session")
def tiny_dataset(shared_dir, models_dir, tmp_path_factory) -> Path:
    """A small prepared dataset of real faces (4 sources, 8 frames a video, 40 % of identities held out)."""
    from facexray.faces.config import DetectorConfig
    from facexray.train.prepare import prepare

    out = tmp_path_factory.mktemp("tiny") / "data"
    vids = shared_dir / "data/real_videos"
    sources = [vids / "lia", vids / "dpe", vids / "edtalk/test_data__mouth_source.mp4", shared_dir / "data/real_faces/3ddfa"]
    prepare(sources, out, workers=1, progress=False, sample="uniform=8", val_fraction=0.4,
            detector=DetectorConfig(
                weights=str(models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth")),
            landmark_weights=str(models_dir / "landmark68_cunjian/onnx__pfld.onnx"))
    return out


# -- live streams (facexray watch): a real GStreamer RTSP server ---------------------------------------------

LIVE_CLIP = "data/real_videos/edtalk/test_data__pose_source2.mp4"
"""The default clip served live: a 60-s talking head, 256², H.264 at 25 fps (the server plays it once per session)."""


@pytest.fixture(scope="session")
def rtsp_tool(shared_dir) -> Path:
    """shared/tools/rtsp_server_gst.py; skips when Debian's python3 lacks gi / GstRtspServer."""
    why = livestreams.gst_rtsp_missing()
    if why:
        pytest.skip(why)
    return shared_dir / "tools" / "rtsp_server_gst.py"


@pytest.fixture
def rtsp_server(rtsp_tool, shared_dir):
    """Start RTSP servers of real clips (`rtsp_server()` → a running `RtspServer`); all are killed at teardown."""
    servers: list = []

    def start(clip: str = LIVE_CLIP) -> livestreams.RtspServer:
        servers.append(livestreams.RtspServer(rtsp_tool, shared_dir / clip).start())
        return servers[-1]

    yield start
    for s in servers:
        s.kill()
