"""Video decoding: open files and URLs, decode, sample frames, hand out upright RGB `Frame`s.

The CPU backend is PyAV (`facexray.decode.pyav`); pictures (photos, animated WebP) are read
with Pillow (`facexray.decode.still`) behind the same `open_video`. Usage:

    >>> from facexray.decode import open_video
    >>> with open_video("clip.mp4", "uniform=32") as video:  # doctest: +SKIP
    ...     for frame in video:
    ...         frame.image  # RGB uint8 HWC, upright; frame.pts in seconds

Sampling modes and their text form are described in `facexray.decode.sampling`.
"""

from facexray.decode.info import VideoInfo
from facexray.decode.pyav import VideoReader, default_options, open_video
from facexray.decode.sampling import DEFAULT_SAMPLE, SampleSpec, pick_frames, uniform_targets
from facexray.decode.still import IMAGE_EXTENSIONS, ImageReader, is_image_path, is_still_image

__all__ = [
    "DEFAULT_SAMPLE",
    "IMAGE_EXTENSIONS",
    "ImageReader",
    "SampleSpec",
    "VideoInfo",
    "VideoReader",
    "default_options",
    "is_image_path",
    "is_still_image",
    "open_video",
    "pick_frames",
    "uniform_targets",
]
