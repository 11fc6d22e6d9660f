"""Picture degradations that real video suffers: blur, sharpening, rescaling, JPEG and H.264 compression.

One module for both uses, so that what training shows and what robustness is measured on
are the same operations: `random_degrade` draws them for training items (real and blended
alike, so that no quality cue separates the classes), and `DEGRADATIONS` names the fixed
settings the robustness check applies to real faces (`facexray.train.evaluate`).

Every function takes and returns an RGB uint8 H×W×3 image of the same size; pixels stay
where they are, so an X-ray target needs no change.

Example:
    >>> img = np.full((64, 64, 3), 128, np.uint8)
    >>> jpeg(img, 25).shape
    (64, 64, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of standard deviation `sigma` pixels (a soft lens, an out-of-focus webcam)."""
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def unsharp(image: np.ndarray, amount: float = 0.8, sigma: float = 1.0) -> np.ndarray:
    """Unsharp masking, `image + amount·(image − blur_σ(image))`: the sharpening cameras and phones apply."""
    img = image.astype(np.float32)
    out = img * (1.0 + amount) - amount * cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _down(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def _up(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Down to `factor` of the size (area filter) and back up (bilinear): a small face blown up."""
    return _up(_down(image, factor), image.shape[:2])


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at `quality` (1–100; 4:2:0 chroma, as web pictures are)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def small_compressed(image: np.ndarray, factor: float, compress: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Down to `factor` of the size, `compress`ed there, and blown up: a small face in a low-bitrate
    video, whose 8×8 blocks and ringing the crop enlarges (unlike compression after `rescale`)."""
    return _up(compress(_down(image, factor)), image.shape[:2])


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    """An H.264 intra-frame round trip (libx264 at `crf`, yuv420p, its deblocking on): the blocking and
    smearing of a low-bitrate stream. Odd sizes are padded by edge pixels for the 4:2:0 chroma."""
    import av

    h, w = image.shape[:2]
    padded = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height = padded.shape[1], padded.shape[0]
    enc.pix_fmt = "yuv420p"
    enc.thread_count = 1
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
    packets = enc.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24"))
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if not frames:
        raise ValueError("H.264 round trip returned no frame")
    return frames[0].to_ndarray(format="rgb24")[:h, :w]


@dataclass(frozen=True)
class DegradeConfig:
    """How often, and how strongly, training items are degraded (the recipe's defaults).

    Blur, sharpening, rescaling and a small compressed picture are exclusive (one at most,
    `p_blur` + `p_sharpen` + `p_rescale` + `p_small` ≤ 1); then JPEG or H.264 compression,
    exclusive too, which a small picture always gets at its small size (JPEG or H.264 in the
    ratio `p_jpeg` : `p_h264`). `p_small` is off by default, so that recipes written before it
    still mean what they did.
    """

    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    p_sharpen: float = 0.15
    sharpen_amount: tuple[float, float] = (0.3, 1.5)
    p_rescale: float = 0.25
    rescale_factor: tuple[float, float] = (0.25, 0.9)
    p_small: float = 0.0
    small_factor: tuple[float, float] = (0.25, 0.6)
    p_jpeg: float = 0.45
    jpeg_quality: tuple[int, int] = (20, 95)
    p_h264: float = 0.15
    h264_crf: tuple[int, int] = (23, 40)


def _random_compression(rng: np.random.Generator, cfg: DegradeConfig, u: float) -> Callable[[np.ndarray], np.ndarray]:
    """JPEG when `u` < `p_jpeg`, H.264 when under `p_jpeg` + `p_h264`, else none; strength from `rng`."""
    if u < cfg.p_jpeg:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        return lambda im: jpeg(im, q)
    if u < cfg.p_jpeg + cfg.p_h264:
        crf = int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1))
        return lambda im: h264(im, crf)
    return lambda im: im


def random_degrade(image: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig = DegradeConfig()) -> np.ndarray:
    """At most one of blur / sharpening / rescaling / a small compressed picture, then at most one of
    JPEG / H.264, drawn from `rng`."""
    u = rng.random()
    if u < cfg.p_blur:
        image = gaussian_blur(image, rng.uniform(*cfg.blur_sigma))
    elif u < cfg.p_blur + cfg.p_sharpen:
        image = unsharp(image, rng.uniform(*cfg.sharpen_amount), rng.uniform(0.8, 2.0))
    elif u < cfg.p_blur + cfg.p_sharpen + cfg.p_rescale:
        image = rescale(image, rng.uniform(*cfg.rescale_factor))
    elif u < cfg.p_blur + cfg.p_sharpen + cfg.p_rescale + cfg.p_small:
        factor = rng.uniform(*cfg.small_factor)
        compress = _random_compression(rng, cfg, rng.random() * (cfg.p_jpeg + cfg.p_h264))
        return small_compressed(image, factor, compress)
    return _random_compression(rng, cfg, rng.random())(image)


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg_q25": lambda im: jpeg(im, 25),
    "rescale_x0.3": lambda im: rescale(im, 0.3),
    "blur_s1.5": lambda im: gaussian_blur(im, 1.5),
    "unsharp": lambda im: unsharp(im, 1.0, 1.5),
    "h264_crf35": lambda im: h264(im, 35),
    "small_x0.35_jpeg40": lambda im: small_compressed(im, 0.35, lambda s: jpeg(s, 40)),
}
"""The fixed degradations real faces must survive (README, "The default model"; issue 14's list)."""
