"""The training loop: real faces in, blended fakes made on the fly, the best checkpoint out.

Loss (Face X-ray): BCE on the real/fake logit + `xray_weight` × per-pixel BCE between
the predicted map and the 4·M·(1−M) target. Each epoch ends with validation on the
held-out identities' split (a FIXED set of real and blended faces: same seed every
epoch); the checkpoint with the best validation AUC is kept as `best.safetensors`,
never one chosen on the training split. `last.safetensors` + `last.state.pt` let
`--resume` continue exactly where a run stopped (the time budget counts the whole run).
With `ema_decay` the weights validated and saved are an exponential moving average of
the trained ones. `init` starts a new run (fresh optimiser and schedule) from another
run's checkpoint, e.g. a second stage with a new learning-rate cycle.

Example (config as YAML; any field of `TrainConfig`, `sample:` holds `SampleConfig`)::

    data: .cache/dataset_real
    out: runs/w18s
    epochs: 20
    batch_size: 16
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import __version__
from ..faces.crop import CropSpec
from ..models.checkpoint import load_checkpoint, load_checkpoint_as, save_checkpoint
from ..models.xray import DEFAULT_ARCH, XRAY_STRIDE, create_model
from .dataset import SampleConfig, XrayDataset, model_input, paired_collate
from .index import read_index
from .metrics import binary_metrics


@dataclass
class TrainConfig:
    """A training recipe; every default here is the recipe's default."""

    data: str = ""
    out: str = "runs/xray"
    arch: str = DEFAULT_ARCH
    imagenet: str | None = "auto"   # backbone start: "auto" (the installed package's ImageNet weights), a path, or None
    init: str | None = None         # a facexray checkpoint to start from instead (same weights, e.g. another
                                    # fuse stride of its backbone; `imagenet` then unused)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 5.0
    ema_decay: float | None = None  # validate and save an EMA of the weights (e.g. 0.998), not the raw ones
    freeze: list[str] = field(default_factory=list)  # modules kept at their start weights (see `freeze_modules`)
    xray_weight: float = 10.0
    workers: int = 2
    seed: int = 0                   # the training draws (a second stage takes another seed: new blends)
    val_seed: int = 1               # the fixed validation draw, the same across stages so AUCs compare
    device: str = "cpu"
    amp: bool = True
    channels_last: bool = True      # NHWC activations (the layout the CPU and CUDA conv kernels prefer)
    patch_size: int | None = None   # cut this share of training batches to random patch_size² windows
    patch_prob: float = 0.0         # (see `cut_patches`); validation always sees whole crops
    patches_per_face: int = 1       # windows cut from each face of such a batch (its size × this)
    low_res_size: int | None = None  # train the first `low_res_share` of the schedule on batches shrunk
    low_res_share: float = 0.0       # to low_res_size² (see `shrink_batch`); validation sees whole crops
    steps_per_epoch: int | None = None   # None: one pass over the training faces; more draws each face again
    time_budget_s: float | None = None
    log_every: int = 10
    sample: SampleConfig = field(default_factory=SampleConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        if str(d.get("imagenet")).lower() == "none":
            d["imagenet"] = None
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        if isinstance(d.get("sample"), dict):
            d["sample"] = SampleConfig.from_dict(d["sample"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        return cls.from_dict({**_read_recipe(Path(path)), **{k: v for k, v in overrides.items() if v is not None}})


def _read_recipe(path: Path) -> dict:
    """A recipe's mapping; `base: other.yaml` (relative to this file) is read first and this one
    overrides its keys (mappings such as `sample:` and `sample.degrade:` key by key), so a second
    stage restates only what changes."""
    import yaml

    d = yaml.safe_load(path.read_text()) or {}
    if "base" not in d:
        return d
    return _merged(_read_recipe(path.parent / d.pop("base")), d)


def _merged(base: dict, over: dict) -> dict:
    """`base` with `over`'s keys, mappings merged key by key at every depth."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@dataclass
class TrainResult:
    best: Path
    best_val_auc: float
    epochs_run: int
    history: list[dict]


def loss_fn(logit: torch.Tensor, xray_logits: torch.Tensor, batch: dict, xray_weight: float) -> tuple[torch.Tensor, dict]:
    """Classification BCE + weighted per-pixel BCE on the X-ray map (faces without a target skip the map)."""
    cls = F.binary_cross_entropy_with_logits(logit, batch["label"])
    per_face = F.binary_cross_entropy_with_logits(xray_logits, batch["xray"], reduction="none").mean(dim=(1, 2))
    valid = batch["xray_valid"]
    xray = (per_face * valid).sum() / valid.sum().clamp(min=1.0)
    return cls + xray_weight * xray, {"loss_cls": cls.item(), "loss_xray": xray.item()}


def cut_patches(batch: dict, size: int, rng: np.random.Generator, stride: int = XRAY_STRIDE,
                evidence: float = 0.05, per_face: int = 1) -> dict:
    """Each face cut to `per_face` random `size`² windows at the crop's own pixel scale, its X-ray target with them.

    The network is fully convolutional, so a window costs (size/S)² of a whole crop and keeps
    the blending artefacts at their real scale: many more steps for the same compute. A fake
    window that holds no blending (target below `evidence` everywhere) is labelled real, since
    nothing in it shows the fake; a fake without an X-ray target keeps its label. Several windows
    per face make more steps from each (costly) blended sample.
    """
    if per_face > 1:
        batch = {k: v.repeat_interleave(per_face, dim=0) for k, v in batch.items()}
    image, xray = batch["image"], batch["xray"]
    n, _, h, w = image.shape
    if size % stride or size > min(h, w):
        raise ValueError(f"patch_size must be a multiple of {stride} and at most {min(h, w)}, got {size}")
    cells = size // stride
    ys = rng.integers(0, (h - size) // stride + 1, n)
    xs = rng.integers(0, (w - size) // stride + 1, n)
    img = torch.stack([image[i, :, y * stride:y * stride + size, x * stride:x * stride + size]
                       for i, (y, x) in enumerate(zip(ys, xs))])
    tgt = torch.stack([xray[i, y:y + cells, x:x + cells] for i, (y, x) in enumerate(zip(ys, xs))])
    shows = (tgt.flatten(1).amax(dim=1) >= evidence).float()
    label = torch.where(batch["xray_valid"] > 0, batch["label"] * shows, batch["label"])
    return {**batch, "image": img, "xray": tgt, "label": label}


def freeze_modules(model: torch.nn.Module, names: list[str]) -> list[torch.nn.Module]:
    """Keep the modules named `names` (as `model.named_modules()` names them, e.g. `backbone._blocks.0`)
    at their start weights, their BatchNorm statistics included; returns them, to be put back in eval
    mode whenever the model is put in training mode.

    Much of a training step is the backward pass through the high-resolution early layers, which an
    ImageNet backbone's stem and first blocks may not need. Measured for EfficientNet-Lite0 frozen
    through stride 4 on the 2-core CPU: a step alone about 1.3× as fast, a whole 100-minute run 11 %
    more steps and a lower validation AUC (README, "The default model").
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"freeze: no module named {', '.join(unknown)} in this network")
    frozen = [modules[n] for n in names]
    for m in frozen:
        m.requires_grad_(False)
    return frozen


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _run_provenance(cfg: TrainConfig) -> dict:
    """What stays the same for a whole run: the recipe, the exact data, the code."""
    index = Path(cfg.data) / "index.jsonl"
    recs = read_index(cfg.data)
    split_ids = {s: sorted({r["identity"] for r in recs if r["split"] == s}) for s in ("train", "val")}
    return {
        "recipe": {**dataclasses.asdict(cfg), "loss": "bce(label) + xray_weight * bce(xray map)"},
        "data": {"index": str(index), "index_sha256": hashlib.sha256(index.read_bytes()).hexdigest(),
                 "faces": {s: sum(r["split"] == s for r in recs) for s in ("train", "val")},
                 "identities": {s: len(ids) for s, ids in split_ids.items()},
                 "val_identities": split_ids["val"],
                 "sources": sorted({r["source"] for r in recs})},
        "git_commit": _git_commit(), "facexray_version": __version__, "torch": torch.__version__,
        **({"init": _init_provenance(cfg.init)} if cfg.init else {}),
    }


def _init_provenance(path: str) -> dict:
    """What a run started from: that checkpoint's own recipe, validation and origin (a chain of stages)."""
    from ..models.checkpoint import read_metadata

    prov = read_metadata(path).get("provenance") or {}
    return {"path": str(path), **{k: prov[k] for k in ("recipe", "validation", "epoch", "date", "git_commit", "init")
                                  if k in prov}}


@torch.inference_mode()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> dict:
    """Validation metrics of the real/fake output on a fixed set of real and blended faces."""
    model.eval()
    labels, probs = [], []
    for batch in loader:
        prob, _ = model(model_input(batch["image"], device))
        probs.append(prob.float().cpu().numpy())
        labels.append(batch["label"].numpy())
    return binary_metrics(np.concatenate(labels), np.concatenate(probs))


def _initial_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network a run starts from: `init`'s weights in `arch` when given, else `arch` on its `imagenet` start."""
    if not cfg.init:
        return create_model(cfg.arch, backbone_weights=cfg.imagenet)
    return load_checkpoint_as(cfg.init, cfg.arch)[0]


def schedule_done(step: int, total: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """How much of the schedule after warm-up is behind a step, 0 to 1: by steps, or by this run's
    `time_budget_s` when that ends first, so a budgeted run anneals fully however fast the machine
    turns out to be."""
    t = max(0, step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    if cfg.time_budget_s:
        t = max(t, elapsed_s / cfg.time_budget_s)
    return min(1.0, t)


def lr_at(step: int, total: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """The learning rate of a step: a linear warm-up, then a cosine to 0 over the rest of the schedule."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * schedule_done(step, total, cfg, elapsed_s)))


def shrink_batch(batch: dict, size: int, memory_format: torch.memory_format = torch.contiguous_format,
                 stride: int = XRAY_STRIDE) -> dict:
    """A training batch (images already floats) shrunk to `size`² faces, its X-ray targets to (size/stride)².

    The network is fully convolutional and costs about (size/S)² of a whole crop, so a run can spend
    part of its schedule on small faces (160²: twice the training faces per second on a 2-core CPU)
    and the rest on whole crops. Pairs stay pairs: each face is shrunk alike (antialiased, as a small
    face in a video is). Measured for the default model, it taught the network little: shrinking blurs
    the blending boundary away (README, "The default model").
    """
    image = batch["image"]
    if size % 32 or not stride <= size < image.shape[-1]:
        raise ValueError(f"low_res_size must be a multiple of 32 below the crop size {image.shape[-1]}, got {size}")
    small = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    xray = F.adaptive_avg_pool2d(batch["xray"][:, None], size // stride)[:, 0]
    return {**batch, "image": small.clamp_(0.0, 1.0).contiguous(memory_format=memory_format), "xray": xray}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = False) -> TrainResult:
    """Train an X-ray model as `cfg` says; returns where the best checkpoint is and its validation AUC.

    `progress` shows a bar per epoch (loss, samples/s) when stderr is a terminal and prints each
    validation on stderr.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    crop = CropSpec()
    train_ds = XrayDataset(cfg.data, "train", cfg.sample, seed=cfg.seed, crop=crop, train=True)
    val_ds = XrayDataset(cfg.data, "val", cfg.sample, seed=cfg.val_seed, crop=crop, train=False)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda     # fixed input sizes: let cuDNN pick its fastest kernels once
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.workers, pin_memory=cuda)
    model = _initial_model(cfg).to(device)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    frozen = freeze_modules(model, cfg.freeze)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and cuda
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    faces_per_item = 2 if train_ds.paired else 1
    if cfg.batch_size % faces_per_item:
        raise ValueError(f"paired items need an even batch size, not {cfg.batch_size}")
    items_per_batch = cfg.batch_size // faces_per_item
    if len(train_ds) < items_per_batch:
        raise ValueError(f"the training split has {len(train_ds)} faces, too few for a batch of {cfg.batch_size}")
    steps_per_epoch = cfg.steps_per_epoch or len(train_ds) // items_per_batch
    train_ds.passes = math.ceil(steps_per_epoch * items_per_batch / len(train_ds))
    total = steps_per_epoch * cfg.epochs
    log_path = out / "metrics.jsonl"
    state = {"epoch": 0, "step": 0, "best_auc": -1.0, "history": [], "elapsed_s": 0.0}
    saved = None
    if resume and (out / "last.state.pt").exists():
        saved = torch.load(out / "last.state.pt", map_location=device, weights_only=True)
        model.load_state_dict(saved["model"] if "model" in saved else     # a run saved before EMA existed
                              load_checkpoint(out / "last.safetensors", device=device)[0].state_dict())
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state = {"elapsed_s": 0.0, **json.loads(saved["state"])}
    ema = None
    if cfg.ema_decay:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if saved is not None and "ema" in saved:
            ema.load_state_dict(saved["ema"])
    kept = ema.module if ema is not None else model     # the weights validated and saved
    run_provenance = _run_provenance(cfg)
    t_start = time.monotonic() - state["elapsed_s"]
    out_of_time = False
    with open(log_path, "a") as log:
        while state["epoch"] < cfg.epochs and not out_of_time:
            epoch = state["epoch"]
            train_ds.set_epoch(epoch)
            loader = DataLoader(train_ds, batch_size=items_per_batch, shuffle=True, drop_last=True,
                                num_workers=cfg.workers, pin_memory=cuda,
                                collate_fn=paired_collate if train_ds.paired else None,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            model.train()
            for m in frozen:
                m.eval()
            patch_rng = np.random.default_rng([cfg.seed, epoch])
            t_epoch, seen = time.monotonic(), 0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       disable=None if progress else True, leave=False)   # None: a bar on a terminal, not in a log
            for i, batch in enumerate(loader):
                if i >= steps_per_epoch:
                    break
                elapsed = time.monotonic() - t_start
                for g in opt.param_groups:
                    g["lr"] = lr_at(state["step"], total, cfg, elapsed)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                if cfg.patch_size and patch_rng.random() < cfg.patch_prob:
                    batch = cut_patches(batch, cfg.patch_size, patch_rng, per_face=cfg.patches_per_face)
                batch["image"] = model_input(batch["image"], device, layout)
                if cfg.low_res_size and schedule_done(state["step"], total, cfg, elapsed) < cfg.low_res_share:
                    batch = shrink_batch(batch, cfg.low_res_size, layout)
                with torch.autocast(device.type, enabled=use_amp):
                    logit, xray_logits = model.forward_logits(batch["image"])
                loss, parts = loss_fn(logit.float(), xray_logits.float(), batch, cfg.xray_weight)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                state["step"] += 1
                seen += len(batch["label"])
                rate = seen / (time.monotonic() - t_epoch)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{rate:.1f}", refresh=False)
                if state["step"] % cfg.log_every == 0 or i == 0:
                    log.write(json.dumps({"epoch": epoch, "step": state["step"], "loss": loss.item(), **parts,
                                          "lr": opt.param_groups[0]["lr"], "samples_per_s": rate}) + "\n")
                    log.flush()
                if cfg.time_budget_s and time.monotonic() - t_start > cfg.time_budget_s:
                    out_of_time = True
                    break
            bar.close()
            metrics = validate(kept, val_loader, device)
            state["epoch"] = epoch + 1
            state["elapsed_s"] = time.monotonic() - t_start
            record = {"epoch": epoch, "step": state["step"], **{f"val_{k}": v for k, v in metrics.items()}}
            state["history"].append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            prov = {**run_provenance, "epoch": epoch, "validation": metrics,
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            save_checkpoint(kept, out / "last.safetensors", crop=crop.to_dict(), provenance=prov)
            if metrics["auc"] > state["best_auc"]:
                state["best_auc"] = metrics["auc"]
                save_checkpoint(kept, out / "best.safetensors", crop=crop.to_dict(), provenance=prov)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        **({"ema": ema.state_dict()} if ema is not None else {}), "state": json.dumps(state)},
                       out / "last.state.pt")
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: step {state['step']}, validation AUC {metrics['auc']:.4f}"
                           f" (best {state['best_auc']:.4f}), {time.monotonic() - t_start:.0f} s", file=sys.stderr)
    return TrainResult(out / "best.safetensors", state["best_auc"], state["epoch"], state["history"])
