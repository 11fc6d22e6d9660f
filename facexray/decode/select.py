"""Which decoder reads a source: DALI (GPU) where it can, PyAV otherwise, always with the reason.

Example:
    >>> select_decoder("auto", "rtsp://127.0.0.1:8554/test", "cuda", "fps=2").decoder
    'pyav'
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facexray.decode.sampling import SampleSpec
from facexray.errors import BackendUnavailable, DecodeError

if TYPE_CHECKING:
    import torch

DECODERS = ("auto", "pyav", "dali")
DALI_CODECS = ("h264", "hevc")
DALI_PIX_FMTS = ("yuv420p", "yuvj420p")
"""Pixel formats DALI's video reader decodes: it asks NVDEC for NV12 surfaces, i.e. 8-bit 4:2:0 only."""


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder picked for one source and why (shown in records and logs)."""

    decoder: str
    reason: str


def dali_missing(device: str | torch.device) -> str | None:
    """Why DALI cannot run on `device` on this machine (not installed, not a CUDA device), or None."""
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return 'NVIDIA DALI is not installed (pip install -e ".[gpu]")'
    if not str(device).startswith("cuda"):     # "cuda", "cuda:1" or such a torch.device
        return "DALI decodes on a CUDA device; add --device cuda"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def check_decoder(kind: str, device: str | torch.device) -> None:
    """Raise at start-up, not per file: ValueError for an unknown decoder, `BackendUnavailable` for
    `dali` where it cannot run at all."""
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; choose one of {', '.join(DECODERS)}")
    if kind == "dali" and (why := dali_missing(device)):
        raise BackendUnavailable(f"--decoder dali: {why}; or use --decoder pyav")


def _dali_obstacle(source: str, device: str | torch.device, sample: SampleSpec) -> str | None:
    """Why DALI cannot read `source` here, or None when it can."""
    from facexray.decode.pyav import _url_scheme, open_video  # here: DECODERS (the CLI's --help) needs no PyAV
    from facexray.decode.still import is_image_path

    if why := dali_missing(device):
        return why
    if _url_scheme(source) is not None:
        return "DALI reads local files only, not streams"
    if is_image_path(source):
        return "a picture, not a video"
    if sample.mode not in ("all", "every"):
        return f"DALI cannot sample {sample} (it reads all or every=K; uniform=N seeks, which PyAV does)"
    try:
        with open_video(source, "all") as probe:
            info = probe.info
    except DecodeError as e:
        return f"PyAV probe failed ({e.reason})"
    if info.codec not in DALI_CODECS:
        return f"codec {info.codec} (DALI here: {', '.join(DALI_CODECS)})"
    if info.pix_fmt not in DALI_PIX_FMTS:
        return f"pixel format {info.pix_fmt} (DALI decodes 8-bit 4:2:0 only)"
    if info.rotation:
        return f"the video is stored rotated by {info.rotation} degrees, which DALI does not undo"
    return None


def select_decoder(kind: str, source: str | Path, device: str | torch.device, sample: SampleSpec | str) -> DecoderChoice:
    """Pick the decoder for `source`: `pyav` as asked; `dali` as asked or `BackendUnavailable` with the
    reason it cannot; `auto` DALI when it is installed, the device is CUDA and the source a local
    8-bit 4:2:0 H.264/HEVC file sampled with `all`/`every=K`, else PyAV (the reason says which condition failed)."""
    check_decoder(kind, device)
    if kind == "pyav":
        return DecoderChoice("pyav", "asked for")
    obstacle = _dali_obstacle(str(source), device, SampleSpec.coerce(sample))
    if obstacle is None:
        return DecoderChoice("dali", "asked for" if kind == "dali" else "GPU, DALI and a supported codec")
    if kind == "dali":
        raise BackendUnavailable(f"--decoder dali cannot read {source}: {obstacle}")
    return DecoderChoice("pyav", obstacle)


def open_decoder(source: str | Path, sample: SampleSpec | str, decoder: str = "pyav",
                 device: str | torch.device = "cpu", threads: int = 0):
    """`open_video` through the decoder `select_decoder` picks; the reader's `stats["decoder"]` names it.

    Under `auto`, a file DALI refuses when it opens it (variable frame rate, which the probe
    cannot see, or a stream NVDEC cannot decode) is read with PyAV, and the reason says so.
    """
    from facexray.decode.pyav import open_video
    choice = select_decoder(decoder, source, device, sample)
    reader = None
    if choice.decoder == "dali":
        from facexray.decode.dali import DaliVideoReader

        with open_video(source, "all") as probe:
            info = probe.info
        try:
            reader = DaliVideoReader(source, sample, info, device=device)
        except DecodeError as e:
            if decoder == "dali":
                raise
            choice = DecoderChoice("pyav", e.reason)
    if reader is None:
        reader = open_video(source, sample, threads=threads)
    reader.stats["decoder"] = choice.decoder
    reader.stats["decoder_reason"] = choice.reason
    return reader
