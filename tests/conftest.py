"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

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
