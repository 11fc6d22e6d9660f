"""Video decoding: open files and URLs, decode, sample frames, hand out upright RGB `Frame`s.

The CPU backend is PyAV (`facexray.decode.pyav`); the GPU backend DALI (`facexray.decode.dali`,
NVDEC, local H.264/HEVC files, `all`/`every=K`), chosen per source by `select_decoder`; pictures (photos, animated WebP) are read
with Pillow (`facexray.decode.still`) behind the same `open_video`. Usage:

    >>> from facexray.decode import open_video
    >>> with open_video("clip.mp4", "uniform=32") as video:  # doctest: +SKIP
    ...     for frame in video:
    ...         frame.image  # RGB uint8 HWC, upright; frame.pts in seconds

Sampling modes and their text form are described in `facexray.decode.sampling`.
"""

import importlib

# Imported when first used: `facexray.decode.sampling` (the CLI's --help) must not pull in PyAV, Pillow or torch.
_LAZY = {
    "VideoInfo": "info",
    "VideoReader": "pyav", "default_options": "pyav", "open_video": "pyav", "unreadable": "pyav",
    "DEFAULT_SAMPLE": "sampling", "SampleSpec": "sampling", "pick_frames": "sampling", "uniform_targets": "sampling",
    "DECODERS": "select", "DecoderChoice": "select", "check_decoder": "select", "open_decoder": "select",
    "select_decoder": "select",
    "IMAGE_EXTENSIONS": "still", "ImageReader": "still", "is_image_path": "still", "is_still_image": "still",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DECODERS",
    "DEFAULT_SAMPLE",
    "DecoderChoice",
    "IMAGE_EXTENSIONS",
    "ImageReader",
    "SampleSpec",
    "VideoInfo",
    "VideoReader",
    "check_decoder",
    "default_options",
    "is_image_path",
    "is_still_image",
    "open_decoder",
    "open_video",
    "pick_frames",
    "select_decoder",
    "uniform_targets",
    "unreadable",
]
