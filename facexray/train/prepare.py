"""`facexray prepare`: turn folders of videos and photos into a training dataset of face crops.

For every input (a video, a photo, or a FaceForensics++ video): sample frames, detect
faces (RetinaFace, batched), keep the largest, predict 68 landmarks, and cut a context
crop with THE crop function (`CropSpec().with_context(context_size)`: its centre square
is exactly the crop the model sees at inference, and the band around it leaves room
for jitter and blending). The dataset folder holds:

- `crops/<video>/<frame>_<face>.png`: the context crops (and `..._mask.png`, the
  manipulation mask cut the same way, for FaceForensics++ fakes: from the dataset's mask
  video when there is one, else the SSIM difference against the same cut of the original
  video's frame, `diffmask.difference_mask`); lossless `.webp` instead with
  `image_format="webp"`;
- `index.jsonl`: one record per face (see `face_record`), with the 5 and 68 landmarks
  in context-crop pixels, the label, and a train/val split made by identity;
- `errors.jsonl`: one record per input that could not be read;
- `done.jsonl`: one record per finished input (path, size, mtime), so a re-run skips
  what is done and picks up where a killed run stopped;
- `prepare.json`: the settings that fix the crops and the split; a later run into the
  same folder must use the same ones.

Labels come from the FaceForensics++ layout when the inputs follow it
(`original_sequences/...` real, `manipulated_sequences/<method>/...` fake, masks in
`manipulated_sequences/<method>/masks/videos/`); everything else is real.

Example::

    report = prepare(["videos/", "photos/"], Path("dataset"), workers=2)
    print(report.summary())
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..contracts import Frame
from ..decode import DEFAULT_SAMPLE, IMAGE_EXTENSIONS, SampleSpec, open_video
from ..errors import FacexrayError
from ..faces.crop import CropSpec, crop_face
from ..faces.detect import Detections, DetectorConfig, RetinaFaceDetector
from ..faces.landmarks import LandmarkModel, PfldLandmarks, five_from_68
from ..scan.discover import MEDIA_EXTENSIONS, discover
from ..scan.results import ResultWriter
from .diffmask import difference_mask
from .index import read_jsonl

LANDMARK_AGREEMENT = 0.15
"""A face is dropped (a landmark failure) when the five points derived from its 68 landmarks lie
farther than this from the detector's five, on average, in units of the box size (sqrt of its
area). Measured on the shared real faces and videos: 99 % of faces agree within 0.11; the few
above 0.15 were wrong (68 points on the wrong face, on a profile, or on a face cut by the edge)."""

DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
"""Worker processes when none are asked for: one per core (measured here: 2 on 2 cores prepared
8 videos in 13-17 s against 21 s in-process), at most 8 (each holds its own models and frames)."""

_FRAME_CHUNK = 8  # frames decoded before a detection call (bounds memory on long 1080p samples)
IMAGE_FORMATS = {"png": [], "webp": [cv2.IMWRITE_WEBP_QUALITY, 101]}
"""How crops and masks can be stored, with the OpenCV options that make each lossless. Lossless WebP
takes about 55 % of PNG's bytes on these crops (measured on 54 of the shared faces: 57 KB against
105 KB) and is slower to write (84 ms a crop here); both decode to the same pixels. WebP has no grey mode: a
mask is stored as three equal channels, and read back as grey (`cv2.IMREAD_GRAYSCALE`) as PNG's are."""
_SETTINGS_FILE = "prepare.json"
_FFPP_REAL, _FFPP_FAKE, _FFPP_MASKS = "original_sequences", "manipulated_sequences", "masks"


@dataclass(frozen=True)
class PrepareConfig:
    """Every `prepare` setting and its default (the one place they are defined).

    `sample`: frames per video (a `SampleSpec` text). `max_faces`: faces kept per frame,
    largest first; `min_face`: smallest box side kept, in pixels. `context_size`: side
    of the stored crops (see `CropSpec.with_context`). `val_fraction` and `seed` fix the
    identity split. `landmark_weights`: a PFLD ONNX file (None: `resolve_weights`).
    `image_format`: how crops are stored, one of `IMAGE_FORMATS` (lossless either way).
    """

    sample: str = DEFAULT_SAMPLE
    val_fraction: float = 0.15
    seed: int = 0
    context_size: int = 320
    max_faces: int = 1
    min_face: float = 64.0
    crop: CropSpec = field(default_factory=CropSpec)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    landmark_weights: str | None = None
    image_format: str = "png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample", str(SampleSpec.coerce(self.sample)))
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        self.crop.with_context(self.context_size)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")

    @property
    def context_spec(self) -> CropSpec:
        return self.crop.with_context(self.context_size)

    def dataset_settings(self) -> dict:
        """What every run into one dataset folder must share: the crop, the split rule and the image format."""
        return {"crop_spec": self.crop.to_dict(), "context_size": self.context_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "image_format": self.image_format}


@dataclass(frozen=True)
class Source:
    """One input and what its path says about it."""

    path: Path
    kind: str                    # "video" or "image"
    video: str                   # unique id, also the folder of its crops
    identity: str
    label: str = "real"
    method: str | None = None
    mask: Path | None = None     # FaceForensics++ mask video of a fake
    original: Path | None = None # the video a fake was made from, for SSIM difference masks when it has no mask

    def stamp(self) -> dict:
        """Path, size and mtime: a finished input is skipped while these stay the same."""
        st = self.path.stat()
        return {"source": str(self.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class SourceResult:
    """What processing one input gave: its index records, or an error."""

    source: Source
    records: list[dict] = field(default_factory=list)
    error: str | None = None
    frames: int = 0
    frames_without_face: int = 0
    landmark_failures: int = 0


@dataclass
class PrepareReport:
    """The outcome of one `prepare` run; `index_*` count the whole dataset after it."""

    out: str
    sources: int = 0
    skipped: int = 0
    processed: int = 0
    errors: int = 0
    frames: int = 0
    frames_without_face: int = 0
    faces: int = 0
    landmark_failures: int = 0
    elapsed_s: float = 0.0
    index_faces: int = 0
    index_by_split: dict[str, int] = field(default_factory=dict)
    index_by_label: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a terminal."""
        return (f"prepared {self.processed} of {self.sources} input(s) in {self.elapsed_s:.1f} s "
                f"({self.skipped} already done, {self.errors} unreadable): {self.faces} face(s) from "
                f"{self.frames} frame(s) ({self.frames_without_face} without a face, "
                f"{self.landmark_failures} dropped for landmark failure)\n"
                f"dataset {self.out}: {self.index_faces} face(s); split {dict(sorted(self.index_by_split.items()))}; "
                f"label {dict(sorted(self.index_by_label.items()))}")


# -- public ---------------------------------------------------------------------------------------

def prepare(sources: Sequence[str | Path], out: str | Path, config: PrepareConfig | None = None, *,
            workers: int = DEFAULT_WORKERS, progress: bool = True, **overrides) -> PrepareReport:
    """Prepare the faces of `sources` (files and folders, searched recursively) into the dataset `out`.

    Settings come from `config` (default `PrepareConfig()`) with any of its fields given as
    keywords taking precedence, e.g. `prepare(srcs, out, sample="uniform=8", context_size=384)`.
    `workers` processes (spawned; each loads the models once) share the inputs; 1 runs
    here. Unreadable inputs get an error record and are skipped. Re-running skips inputs
    already done (same path, size and mtime) and never duplicates a record; records of an
    input are written only once it is fully processed. Raises FileNotFoundError for a
    missing path, ValueError for a bad setting or for settings that differ from those the
    dataset was started with, and FacexrayError when the models cannot be loaded.
    """
    cfg = replace(config or PrepareConfig(), **overrides)
    out = Path(out)
    t0 = time.perf_counter()
    items = find_sources(sources, exclude=out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    finished = {d["source"]: d for d in read_jsonl(out / "done.jsonl")}
    todo = [s for s in items if not _same_stamp(finished.get(str(s.path)), s)]
    _repair(out, keep=set(finished) - {str(s.path) for s in todo})
    report = PrepareReport(out=str(out), sources=len(items), skipped=len(items) - len(todo))

    with ResultWriter(out / "index.jsonl") as index, ResultWriter(out / "errors.jsonl") as errors, \
            ResultWriter(out / "done.jsonl") as done, \
            tqdm(total=len(todo), unit="input", disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
        for res in _results(todo, cfg, out, workers):
            for rec in res.records:
                index.write(rec)
            if res.error is not None:
                errors.write({"source": str(res.source.path), "error": res.error})
            done.write({**res.source.stamp(), "faces": len(res.records), "error": res.error is not None})
            report.processed += 1
            report.errors += res.error is not None
            report.frames += res.frames
            report.frames_without_face += res.frames_without_face
            report.faces += len(res.records)
            report.landmark_failures += res.landmark_failures
            bar.set_postfix(faces=report.faces, errors=report.errors, refresh=False)
            bar.update()

    recs = read_jsonl(out / "index.jsonl")
    report.index_faces = len(recs)
    report.index_by_split = dict(Counter(r["split"] for r in recs))
    report.index_by_label = dict(Counter(r["label"] for r in recs))
    report.elapsed_s = time.perf_counter() - t0
    return report


def split_of(identity: str, seed: int, val_fraction: float) -> str:
    """"val" or "train" for an identity: a hash of (seed, identity), so every run and resume agrees."""
    h = int.from_bytes(hashlib.sha256(f"{seed}\0{identity}".encode()).digest()[:8], "big")
    return "val" if h < val_fraction * 2.0 ** 64 else "train"


def find_sources(paths: Sequence[str | Path], exclude: Path | None = None) -> list[Source]:
    """The inputs under `paths` (videos and photos, recursively), labelled, with ids and identities.

    Mask videos of FaceForensics++ are not inputs (they travel with their fake); files
    under `exclude` (the dataset being written) are skipped. The id of an input is its
    path from its root's parent folder, without the extension (`real_videos/ghost/dance`).
    Raises ValueError when two inputs would get the same id (same folder name and stem
    under two roots): their crops would overwrite each other.
    """
    roots = [Path(p).resolve() for p in paths]
    skip = exclude.resolve() if exclude is not None else None
    found: dict[str, Source] = {}
    for f in discover(roots, MEDIA_EXTENSIONS):
        f = f.resolve()
        if (skip is not None and skip in f.parents) or _is_ffpp_mask(f):
            continue
        root = next((r for r in roots if r == f or r in f.parents), f)
        src = _describe(f, root)
        if src.video in found:
            raise ValueError(f"{found[src.video].path} and {f} would share the id {src.video!r}; "
                             "prepare them into separate datasets")
        found[src.video] = src
    return list(found.values())


def face_record(src: Source, frame: Frame, face: int, box: np.ndarray, score: float, lm5: np.ndarray,
                lm68: np.ndarray, matrix: np.ndarray, cfg: PrepareConfig) -> dict:
    """The index record of one face. Boxes are in frame pixels; landmarks in context-crop pixels."""
    return {
        "id": f"{src.video}/{frame.index:06d}_{face}",
        "source": str(src.path),
        "video": src.video,
        "identity": src.identity,
        "frame": int(frame.index),
        "pts": round(float(frame.pts), 4),
        "face": face,
        "box": [round(float(v), 2) for v in box],
        "det_score": round(float(score), 4),
        "crop": f"crops/{src.video}/{frame.index:06d}_{face}.{cfg.image_format}",
        "context_size": cfg.context_size,
        "crop_spec": cfg.crop.to_dict(),
        "landmarks5": _to_crop(lm5, matrix),
        "landmarks68": _to_crop(lm68, matrix),
        "label": src.label,
        "method": src.method,
        "mask": None,
        "split": split_of(src.identity, cfg.seed, cfg.val_fraction),
    }


# -- inputs ---------------------------------------------------------------------------------------

def _describe(path: Path, root: Path) -> Source:
    """Id, identity, label and mask of one input found under `root`."""
    kind = "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"
    rel = path.relative_to((root if root != path else path.parent).parent)
    stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if _stem_is_shared(path) else path.stem
    video = (rel.parent / stem).as_posix()
    parts = path.parts
    if _FFPP_FAKE in parts[:-2]:
        i = parts.index(_FFPP_FAKE)
        mask = Path(*parts[:i + 2], _FFPP_MASKS, "videos", path.name)
        if mask.is_file():
            return Source(path, kind, video, _ffpp_identity(path), "fake", parts[i + 1], mask=mask)
        return Source(path, kind, video, _ffpp_identity(path), "fake", parts[i + 1], original=_ffpp_original(path))
    if _FFPP_REAL in parts[:-1]:
        return Source(path, kind, video, _ffpp_identity(path))
    return Source(path, kind, video, video if kind == "video" else path.stem)


def _is_ffpp_mask(path: Path) -> bool:
    """Whether `path` lies in a FaceForensics++ mask folder (`manipulated_sequences/<method>/masks/...`)."""
    parts = path.parts
    return _FFPP_FAKE in parts and parts[parts.index(_FFPP_FAKE) + 2:][:1] == (_FFPP_MASKS,)


def _ffpp_identity(path: Path) -> str:
    """The person of a FaceForensics++ video: its first number (`000` for `000.mp4` and for `000_003.mp4`).

    A fake keeps its target video's scene and identity, so it shares the original's split.
    (Its swapped-in face comes from the second video, which FF++'s own split pairs with it.)
    """
    return "ffpp/" + path.stem.split("_")[0]


def _ffpp_original(fake: Path) -> Path | None:
    """The original a FaceForensics++ fake was made from: `manipulated_sequences/<method>/<c>/videos/000_003.mp4`
    → `original_sequences/<any>/<c>/videos/000.mp4` (the target video, whose scene the fake keeps)."""
    parts = fake.parts
    i = parts.index(_FFPP_FAKE)
    if len(parts) < i + 5:
        return None
    root, compression = Path(*parts[:i]), parts[i + 2]
    found = sorted((root / _FFPP_REAL).glob(f"*/{compression}/videos/{fake.stem.split('_')[0]}{fake.suffix}"))
    return found[0] if found else None


@lru_cache(maxsize=4096)
def _stems_in(folder: Path) -> Counter:
    return Counter(p.stem for p in folder.iterdir() if p.suffix.lower() in MEDIA_EXTENSIONS)


def _stem_is_shared(path: Path) -> bool:
    """Whether another media file beside `path` has its stem (`a.mp4`, `a.avi`): then ids keep the extension.

    Decided by the folder's content, not by which inputs a run was given, so ids never
    change between a partial and a full run.
    """
    return _stems_in(path.parent)[path.stem] > 1


# -- processing -------------------------------------------------------------------------------------

class _Models:
    """The detector and landmark model of one process, built once."""

    def __init__(self, cfg: PrepareConfig, threads: int | None = None):
        self.detector = RetinaFaceDetector(config=replace(cfg.detector, min_face=cfg.min_face))
        self.landmarks: LandmarkModel = PfldLandmarks(cfg.landmark_weights, threads=threads)


def process_source(src: Source, models: _Models, cfg: PrepareConfig, out: Path) -> SourceResult:
    """Detect, landmark and crop the faces of one input; crops go to disk, records come back.

    Any failure to read the input becomes `SourceResult.error`; model errors propagate.
    """
    res = SourceResult(src)
    ctx = cfg.context_spec
    pending_masks: list[tuple[dict, float, np.ndarray]] = []
    try:
        for chunk in _frame_chunks(src, cfg.sample):
            for frame, dets in zip(chunk, models.detector.detect([f.image for f in chunk])):
                res.frames += 1
                kept = _largest(dets, cfg.max_faces)
                if not kept:
                    res.frames_without_face += 1
                    continue
                lm68s = models.landmarks.predict(frame.image, dets.boxes[kept])
                for face, (j, lm68) in enumerate(zip(kept, lm68s)):
                    box, lm5 = dets.boxes[j], dets.landmarks[j]
                    if not _landmarks_agree(lm68, lm5, box):
                        res.landmark_failures += 1
                        continue
                    crop, m = crop_face(frame.image, lm5, ctx)
                    rec = face_record(src, frame, face, box, float(dets.scores[j]), lm5, lm68, m, cfg)
                    _write_image(out / rec["crop"], cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    res.records.append(rec)
                    if src.mask is not None or src.original is not None:
                        pending_masks.append((rec, frame.pts, lm5))
    except (FacexrayError, OSError) as e:
        return SourceResult(src, error=str(e), frames=res.frames)
    if pending_masks and src.mask is not None:
        _cut_masks(src.mask, pending_masks, ctx, out, lambda rec, crop: crop.max(axis=2))
    elif pending_masks:
        _cut_masks(src.original, pending_masks, ctx, out, partial(_difference_png, out))
    return res


def _difference_png(out: Path, rec: dict, original_crop: np.ndarray) -> np.ndarray:
    """The SSIM difference mask (uint8) of a fake face's stored crop against the same cut of its original frame."""
    fake = cv2.cvtColor(cv2.imread(str(out / rec["crop"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.round(255 * difference_mask(fake, original_crop)).astype(np.uint8)


def _frame_chunks(src: Source, sample: str) -> Iterator[list[Frame]]:
    """The sampled frames of a video (or the one frame of a photo), a few at a time."""
    with open_video(src.path, sample) as video:
        chunk: list[Frame] = []
        for frame in video:
            chunk.append(frame)
            if len(chunk) == _FRAME_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _largest(dets: Detections, n: int) -> list[int]:
    """Indices of the `n` largest faces (by box area), largest first."""
    b = dets.boxes
    return [int(i) for i in np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")[:n]]


def _landmarks_agree(lm68: np.ndarray, lm5: np.ndarray, box: np.ndarray) -> bool:
    """Whether the 68 points and the detector's 5 describe the same face (see LANDMARK_AGREEMENT)."""
    size = float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)))
    if not np.isfinite(lm68).all():
        return False
    return float(np.linalg.norm(five_from_68(lm68) - lm5, axis=1).mean()) <= LANDMARK_AGREEMENT * size


def _cut_masks(video_path: Path, pending: list[tuple[dict, float, np.ndarray]], ctx: CropSpec, out: Path,
               to_mask: Callable[[dict, np.ndarray], np.ndarray]) -> None:
    """Write a manipulation mask for each pending face (record, pts, 5 landmarks) of a fake.

    `video_path` is read from the start: its frames pair with the fake's by timestamp
    (within half a frame); each paired frame is cut as the face's crop was (same
    landmarks, same spec) and `to_mask(record, that_crop)` makes the mask: the mask video's
    own pixels, or the SSIM difference against the original's frame. A face whose frame
    cannot be found keeps `mask` null; an unreadable video leaves all of them null.
    """
    wanted = sorted(pending, key=lambda p: p[1])
    try:
        with open_video(video_path, "all") as video:
            half = 0.5 / (video.info.fps or 25.0)
            k = 0
            for frame in video:
                while k < len(wanted) and wanted[k][1] < frame.pts - half:
                    k += 1
                while k < len(wanted) and abs(wanted[k][1] - frame.pts) <= half:
                    rec, _, lm5 = wanted[k]
                    crop, _ = crop_face(frame.image, lm5, ctx)
                    crop_path = Path(rec["crop"])
                    rec["mask"] = crop_path.with_name(f"{crop_path.stem}_mask{crop_path.suffix}").as_posix()
                    _write_image(out / rec["mask"], to_mask(rec, crop))
                    k += 1
                if k == len(wanted):
                    break
    except (FacexrayError, OSError):
        for rec, _, _ in pending:
            rec["mask"] = None


def _to_crop(points: np.ndarray, matrix: np.ndarray) -> list[list[float]]:
    """Frame-pixel points (N, 2) mapped by the 2×3 crop matrix, rounded to 0.01 px."""
    p = np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return np.round(p, 2).tolist()


def _write_image(path: Path, image: np.ndarray) -> None:
    """Write a crop or mask losslessly in the format its extension names (`IMAGE_FORMATS`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, IMAGE_FORMATS[path.suffix[1:]]):
        raise OSError(f"could not write {path}")


# -- running ----------------------------------------------------------------------------------------

_WORKER: tuple[_Models, PrepareConfig, Path] | None = None


def _init_worker(cfg: PrepareConfig, out: Path, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _WORKER = (_Models(cfg, threads=threads), cfg, out)


def _work(src: Source) -> SourceResult:
    assert _WORKER is not None, "worker not initialised"
    models, cfg, out = _WORKER
    return process_source(src, models, cfg, out)


def _results(todo: list[Source], cfg: PrepareConfig, out: Path, workers: int) -> Iterator[SourceResult]:
    """Process `todo` here (workers=1) or in `workers` spawned processes; results in completion order.

    The models are built here first either way, so missing weights fail before any work
    starts (and the detector's ONNX export is cached once, not raced by every worker).
    """
    models = _Models(cfg)
    if workers <= 1 or len(todo) <= 1:
        for src in todo:
            yield process_source(src, models, cfg, out)
        return
    del models
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, out, threads)) as pool:
        yield from pool.imap_unordered(_work, todo)


# -- dataset files ------------------------------------------------------------------------------------

def _same_stamp(done: dict | None, src: Source) -> bool:
    if done is None:
        return False
    now = src.stamp()
    return done["size"] == now["size"] and done["mtime_ns"] == now["mtime_ns"]


def _repair(out: Path, keep: set[str]) -> None:
    """Make the dataset's files consistent after a killed run, before appending to them.

    Index and error records of inputs not in `keep` (unfinished: the run was killed
    between an input's records and its done record; or about to be redone: the file
    changed) are removed, and a torn last line (killed mid-write) is cut from all three
    files. A file is rewritten to a temporary name and renamed, and only when needed.
    """
    for name in ("index.jsonl", "errors.jsonl", "done.jsonl"):
        path = out / name
        if not path.exists():
            continue
        recs = read_jsonl(path)
        kept = recs if name == "done.jsonl" else [r for r in recs if r.get("source") in keep]
        data = path.read_bytes()
        if len(kept) == len(recs) and (not data or data.endswith(b"\n")):
            continue
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, path)


def _check_settings(out: Path, cfg: PrepareConfig) -> None:
    """Record the dataset's crop and split settings on the first run; refuse a later run that differs."""
    path = out / _SETTINGS_FILE
    want = cfg.dataset_settings()
    if path.exists():
        have = {"image_format": "png", **json.loads(path.read_text())}   # datasets from before the option were PNG
        if have != want:
            raise ValueError(f"{out} was prepared with {have}, not {want}: mixing them would break the crop "
                             "or the identity split; use another --out or the same settings")
        return
    tmp = path.with_name(f".{_SETTINGS_FILE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(want, indent=1))
    os.replace(tmp, path)
