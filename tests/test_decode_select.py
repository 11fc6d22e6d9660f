"""Choosing the decoder (DALI on the GPU where it can, PyAV otherwise) and the DALI reader itself."""

import importlib.util

import numpy as np
import pytest
import torch

from facexray.decode import open_decoder, open_video, select_decoder
from facexray.errors import BackendUnavailable, DecodeError

DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


@pytest.fixture(scope="module")
def h264(shared_dir):
    clip = shared_dir / "data/real_videos/face_recognition/examples__short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    return clip


def test_auto_reads_with_pyav_here_and_says_why(h264):
    cpu = select_decoder("auto", h264, "cpu", "all")
    assert cpu.decoder == "pyav" and ("DALI" in cpu.reason or "CUDA" in cpu.reason)
    if not (DALI and torch.cuda.is_available()):
        assert select_decoder("auto", h264, "cuda", "all").decoder == "pyav"
    # whatever the machine: streams, uniform=N and pictures are PyAV's
    assert select_decoder("auto", "rtsp://127.0.0.1:8554/test", "cuda", "fps=2").decoder == "pyav"
    assert select_decoder("auto", h264, "cuda", "uniform=8").decoder == "pyav"
    assert select_decoder("pyav", h264, "cuda", "all").reason == "asked for"
    with open_decoder(h264, "uniform=2", "auto", "cpu") as r:
        assert r.stats["decoder"] == "pyav" and len(list(r)) == 2


def test_dali_asked_for_where_it_cannot_run_is_a_clear_error(h264):
    with pytest.raises(BackendUnavailable, match="--decoder dali"):
        select_decoder("dali", h264, "cpu", "all")
    with pytest.raises(BackendUnavailable, match="--decoder dali"):
        select_decoder("dali", h264, "cuda", "uniform=4")
    with pytest.raises(ValueError, match="unknown decoder"):
        select_decoder("nvdec", h264, "cpu", "all")


def test_auto_reads_with_pyav_a_file_dali_refuses_on_opening(h264, monkeypatch):
    """DALI refuses variable-frame-rate files when it opens them, which the probe cannot foresee."""
    from facexray.decode import dali, select

    def refuse(source, *args, **kwargs):
        raise DecodeError(str(source), "DALI cannot read it (Variable frame rate videos are unsupported)")

    monkeypatch.setattr(dali, "DaliVideoReader", refuse)
    monkeypatch.setattr(select, "select_decoder", lambda *a: select.DecoderChoice("dali", "GPU, DALI and a codec"))
    with open_decoder(h264, "uniform=2", "auto", "cuda") as r:
        assert r.stats["decoder"] == "pyav" and "Variable frame rate" in r.stats["decoder_reason"]
        assert len(list(r)) == 2
    with pytest.raises(DecodeError, match="Variable frame rate"):   # asked for by name: no fallback
        open_decoder(h264, "all", "dali", "cuda")


def test_pipeline_refuses_dali_on_cpu_at_start_up(detector_weights):
    from torch import nn

    from facexray.decode import check_decoder
    from facexray.engines import TorchEngine
    from facexray.engines.xray import XrayRunner
    from facexray.faces.crop import CropSpec
    from facexray.faces.detect import RetinaFaceDetector
    from facexray.pipeline import Pipeline, PipelineConfig

    check_decoder("auto", "cpu")
    xray = XrayRunner(TorchEngine(nn.Identity(), ("prob",)), {"crop": CropSpec().to_dict()}, "identity")
    with pytest.raises(BackendUnavailable, match="--decoder dali"):
        Pipeline(RetinaFaceDetector(engine="torch"), xray, PipelineConfig(decoder="dali"))


def test_scan_decoder_flag_reaches_the_pipeline_config():
    from facexray.cli import _scan_config, build_parser

    a = build_parser().parse_args(["scan", "x.mp4", "--decoder", "pyav"])
    assert _scan_config(a).pipeline.decoder == "pyav"
    assert _scan_config(build_parser().parse_args(["scan", "x.mp4"])).pipeline.decoder == "auto"


@pytest.mark.gpu
@pytest.mark.parametrize("sample", ["all", "every=3"])
def test_dali_frames_match_pyav_frames(h264, sample):
    if not DALI:
        pytest.skip('NVIDIA DALI is not installed (pip install -e ".[gpu]")')
    with open_video(h264, sample) as r:
        ref = list(r)
    with open_decoder(h264, sample, "dali", "cuda") as r:
        assert r.stats["decoder"] == "dali"
        got = list(r)
    assert [f.index for f in got] == [f.index for f in ref]
    np.testing.assert_allclose([f.pts for f in got], [f.pts for f in ref], atol=1e-3)
    for a, b in zip(ref[:8], got[:8]):
        assert b.image.is_cuda and b.image.dtype == torch.uint8 and tuple(b.image.shape) == a.image.shape
        # both convert BT.601/709 YUV to RGB, with their own rounding and chroma upsampling
        assert np.abs(b.image.cpu().numpy().astype(int) - a.image.astype(int)).mean() < 3.0
