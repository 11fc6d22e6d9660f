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

from facexray.decode.info import VideoInfo
from facexray.decode.pyav import VideoReader, default_options, open_video, unreadable
from facexray.decode.sampling import DEFAULT_SAMPLE, SampleSpec, pick_frames, uniform_targets
from facexray.decode.select import DECODERS, DecoderChoice, check_decoder, open_decoder, select_decoder
from facexray.decode.still import IMAGE_EXTENSIONS, ImageReader, is_image_path, is_still_image

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
