"""Training and validation samples: real faces from a prepared index, and fakes made on the fly.

Each item is a 256² aligned crop (THE crop: the centre of the stored context crop,
optionally shifted a few pixels for training; RGB uint8, 3×H×W, a quarter of float32's
bytes between worker processes: `model_input` makes the network's floats), its label
and its X-ray target:
  - a real face: label 0, target all zeros;
  - a blended fake (Face X-ray BI with a neighbour of another identity, or SBI): label 1,
    target 4·M·(1−M) of the blending mask;
  - a labelled fake from the index (FF++-style, with a manipulation mask): label 1,
    target from that mask.
Face-Cutout is applied with its overlap rule against the blending mask. Randomness
comes from a generator seeded by (seed, epoch, item), so any worker count gives the
same samples. With `passes` > 1 an epoch draws every face that many times, each
draw an item of its own (its own blend, cutout and augmentation). A paired training set
(`SampleConfig.paired`) gives each item as two faces, real and blended: its tensors carry a
leading 2, and `paired_collate` lays the pairs out as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..faces.crop import CropSpec
from .augment import augment
from .blend import NeighbourIndex, blend_bi, reframe_real, self_blend, source_change, xray_target
from .cutout import face_cutout, fill_cutout
from .degrade import DegradeConfig
from .index import read_index


@dataclass(frozen=True)
class SampleConfig:
    """How items are made; the defaults are the training recipe's."""

    fake_prob: float = 0.5
    sbi_prob: float = 0.5           # among blended fakes, the share of SBI (the rest is BI)
    cutout_prob: float = 0.3
    max_cutout_overlap: float = 0.3
    jitter_px: int = 6
    neighbours: int = 20
    augment: bool = True
    # The share of real faces given SBI's copy change (colour and one of blur, sharpening,
    # down-up scaling) over the whole face: what SBI's pasted copies show inside the paste,
    # real faces then show everywhere, so only a boundary tells a blend (without it the
    # network learned "blurred or soft means fake").
    real_change_prob: float = 0.0
    # The share of real faces whose head is shown over a new or changed surround, or softened in
    # its frame, along a seam outside the face (`blend.reframe_real`): still real.
    real_reframe_prob: float = 0.0
    # Training items as pairs (SBI's batches): each real face is shown twice in its batch, as
    # itself and blended, with the same crop, real-side change, cutout and augmentation, so
    # nothing but the blend tells the two apart (`fake_prob` is then 1/2 by construction).
    paired: bool = False
    degrade: DegradeConfig = field(default_factory=DegradeConfig)

    # A curriculum for training from scratch: in training epoch e the pasted region of a blended
    # fake is also shifted in colour, through its own mask, by up to
    # boost·max(0, 1 − e/boost_epochs) grey levels per channel, so early epochs show loud
    # seams and the network finds the boundary before it must find faint ones; from epoch
    # `boost_epochs` on (and always in validation) fakes are as blended. A colour offset
    # keeps the kind of artefact (a soft mix of two differently coloured sources), which
    # scaling the blend's difference would not: that turns the ghosting of a shifted copy
    # into ringing, and taught the opposite cue.
    boost: float = 0.0
    boost_epochs: int = 0

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> SampleConfig:
        """From a recipe's `sample:` mapping (`degrade:` nested); unknown keys raise, or are dropped
        with `strict=False` (a checkpoint written by another version)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown and strict:
            raise ValueError(f"unknown sample option(s): {', '.join(sorted(unknown))}")
        d = {k: v for k, v in d.items() if k in known}
        if isinstance(d.get("degrade"), dict):
            dk = {f.name: f for f in fields(DegradeConfig)}
            bad = set(d["degrade"]) - set(dk)
            if bad and strict:
                raise ValueError(f"unknown degrade option(s): {', '.join(sorted(bad))}")
            d["degrade"] = DegradeConfig(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in d["degrade"].items() if k in dk})
        return cls(**d)

    @classmethod
    def from_checkpoint(cls, metadata: dict) -> SampleConfig:
        """The sample settings of the recipe a checkpoint records (`SampleConfig()` for one without):
        how its validation items were made, so evaluations and calibrations make them alike."""
        recipe = (metadata.get("provenance") or {}).get("recipe") or {}
        return cls.from_dict(recipe.get("sample") or {}, strict=False)


class XrayDataset(Dataset):
    """Items of one split of a prepared dataset (see the module docstring)."""

    def __init__(self, dataset: str | Path, split: str, config: SampleConfig = SampleConfig(), seed: int = 0,
                 crop: CropSpec = CropSpec(), train: bool = True, passes: int = 1):
        self.root = Path(dataset)
        self.passes = passes
        self.records = read_index(dataset, split)
        if not self.records:
            raise ValueError(f"no {split!r} faces in {self.root / 'index.jsonl'}")
        self.config, self.seed, self.crop, self.train = config, seed, crop, train
        self.epoch = 0
        reals = [i for i, r in enumerate(self.records) if r["label"] == "real"]
        self.paired = train and config.paired
        if self.paired and len(reals) < len(self.records):
            raise ValueError("paired items pair real faces with their own blends: this dataset has labelled fakes")
        self._reals = np.array(reals)
        self._real_identities = np.array([self.records[i]["identity"] for i in reals], dtype=object)
        lms = np.array([self.records[i]["landmarks68"] for i in reals], np.float32)
        self.neighbours = NeighbourIndex(lms, self._real_identities)

    def _other_identity(self, rec: dict, rng: np.random.Generator) -> dict:
        """A random real record of another identity than `rec`'s (of any, when there is no other)."""
        others = np.flatnonzero(self._real_identities != rec["identity"])
        pool = self._reals[others] if len(others) else self._reals
        return self.records[int(pool[rng.integers(len(pool))])]

    def set_epoch(self, epoch: int) -> None:
        """Draw new samples this epoch (a DataLoader made after this call hands it to its workers)."""
        self.epoch = epoch

    @property
    def boost(self) -> float:
        """This epoch's largest colour offset of a pasted region, in grey levels (`SampleConfig.boost`)."""
        cfg = self.config
        if not self.train or cfg.boost_epochs <= 0:
            return 0.0
        return cfg.boost * max(0.0, 1.0 - self.epoch / cfg.boost_epochs)

    def __len__(self) -> int:
        return len(self.records) * self.passes

    def _load(self, rec: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The 256² crop of a record, its 68 landmarks in crop pixels, and its mask crop if any."""
        ctx = cv2.cvtColor(cv2.imread(str(self.root / rec["crop"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        off = (ctx.shape[0] - self.crop.size) // 2
        j = self.config.jitter_px if self.train else 0
        dx, dy = (rng.integers(-j, j + 1, 2) if j else (0, 0))
        x0, y0 = off + int(dx), off + int(dy)
        s = self.crop.size
        img = np.ascontiguousarray(ctx[y0:y0 + s, x0:x0 + s])
        lm = np.asarray(rec["landmarks68"], np.float32) - np.array([x0, y0], np.float32)
        mask = None
        if rec.get("mask"):
            m = cv2.imread(str(self.root / rec["mask"]), cv2.IMREAD_GRAYSCALE)
            mask = np.ascontiguousarray(m[y0:y0 + s, x0:x0 + s]).astype(np.float32) / 255.0
        return img, lm, mask

    def _blend(self, i: int, img: np.ndarray, lm: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Real record `i`'s face `img` blended, by SBI or BI as the recipe mixes them (with this
        epoch's colour boost): (image, blending mask, X-ray target)."""
        cfg = self.config
        if rng.random() < cfg.sbi_prob:
            res = self_blend(img, lm, rng)
        else:
            k = int(np.flatnonzero(self._reals == i)[0])
            other = self.records[int(self._reals[self.neighbours.pick(k, rng, k=cfg.neighbours)])]
            src, src_lm, _ = self._load(other, rng)
            res = blend_bi(img, lm, src, src_lm, rng)
        img, mask = res.image, res.mask
        boost = self.boost
        if boost > 0:
            offset = boost * rng.uniform(0.5, 1.0, 3) * rng.choice([-1.0, 1.0], 3)
            img = np.clip(img + mask[..., None] * offset.astype(np.float32), 0, 255).round().astype(np.uint8)
        return img, mask, res.xray

    def _shown_real(self, img: np.ndarray, lm: np.ndarray, rec: dict, rng: np.random.Generator) -> np.ndarray:
        """A real training face as the recipe shows it: changed over the whole face, or reframed."""
        cfg = self.config
        if rng.random() < cfg.real_change_prob:
            img = source_change(img, rng)
        if rng.random() < cfg.real_reframe_prob:
            img = reframe_real(img, lm, self._load(self._other_identity(rec, rng), rng)[0], rng)
        return img

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, item])
        i = item % len(self.records)
        rec = self.records[i]
        img, lm, mask = self._load(rec, rng)
        if self.paired:
            return self._pair(i, rec, img, lm, rng)
        valid = 1.0
        if rec["label"] == "fake":
            label = 1.0
            valid = float(mask is not None)      # a fake without a mask teaches the label, not the map
            target = xray_target(mask) if mask is not None else np.zeros((64, 64), np.float32)
        elif rng.random() < cfg.fake_prob:
            label = 1.0
            img, mask, target = self._blend(i, img, lm, rng)
        else:
            label, target = 0.0, np.zeros((64, 64), np.float32)
            if self.train:
                img = self._shown_real(img, lm, rec, rng)
        if self.train and rng.random() < cfg.cutout_prob:
            img, _ = face_cutout(img, lm, rng, blend_mask=mask, max_overlap=cfg.max_cutout_overlap)
        if self.train and cfg.augment:
            img, target = augment(img, target, rng, cfg.degrade)
        return _item(img, target, label, valid, i)

    def _pair(self, i: int, rec: dict, img: np.ndarray, lm: np.ndarray,
              rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Real record `i` as a pair of training faces, real then blended (`SampleConfig.paired`)."""
        cfg = self.config
        real = self._shown_real(img, lm, rec, rng)
        fake, mask, target = self._blend(i, real, lm, rng)
        if rng.random() < cfg.cutout_prob:
            fake, cut = face_cutout(fake, lm, rng, blend_mask=mask, max_overlap=cfg.max_cutout_overlap)
            real = fill_cutout(real, cut)
        real_target = np.zeros_like(target)
        if cfg.augment:
            seed = int(rng.integers(2**63))
            real, real_target = augment(real, real_target, np.random.default_rng(seed), cfg.degrade)
            fake, target = augment(fake, target, np.random.default_rng(seed), cfg.degrade)
        a, b = _item(real, real_target, 0.0, 1.0, i), _item(fake, target, 1.0, 1.0, i)
        return {k: torch.stack([a[k], b[k]]) for k in a}


def _item(img: np.ndarray, target: np.ndarray, label: float, xray_valid: float, index: int) -> dict[str, torch.Tensor]:
    return {"image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1),
            "xray": torch.from_numpy(np.ascontiguousarray(target, np.float32)),
            "label": torch.tensor(label), "xray_valid": torch.tensor(xray_valid), "index": torch.tensor(index)}


def paired_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch of paired items (`SampleConfig.paired`) as one batch of faces, each pair side by side."""
    return {k: v.flatten(0, 1) for k, v in default_collate(items).items()}


def calibration_faces(dataset: str | Path, checkpoint_meta: dict, faces: int = 128) -> list[np.ndarray]:
    """`faces` training faces of a prepared dataset, spread evenly over it and each kept real or
    blended as the checkpoint's recipe makes validation items: what an int8 export calibrates its
    activation ranges on (`facexray.engines.xray.export_xray_onnx`), so that they cover fakes too."""
    ds = XrayDataset(dataset, "train", SampleConfig.from_checkpoint(checkpoint_meta), seed=0,
                     crop=CropSpec.from_dict(checkpoint_meta["crop"]), train=False)
    pick = np.linspace(0, len(ds) - 1, min(faces, len(ds))).astype(int)
    return [ds[int(i)]["image"].permute(1, 2, 0).numpy() for i in pick]


def model_input(images: torch.Tensor, device: torch.device,
                memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A batch of item images (uint8, N×3×H×W) as the network takes them: floats in [0, 1] on `device`."""
    return images.to(device, non_blocking=True).float().div_(255.0).contiguous(memory_format=memory_format)
