"""The X-ray model behind an engine: which weights, which crop they expect, and running crops through them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelNotFoundError
from ..faces.crop import CropSpec
from . import create_engine, resolve_engine
from .base import Engine
from .onnx_engine import OnnxRuntimeEngine
from .torch_engine import TorchOptions

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "xray_default.safetensors"
NO_MODEL_HELP = (
    "no trained X-ray model is available: this installation ships no default weights "
    f"(looked for {DEFAULT_MODEL}). Pass --model PATH to a facexray checkpoint "
    "(.safetensors from `facexray train`, or .onnx from `facexray export`), or "
    "--model random for a plumbing check whose scores mean nothing."
)

RANDOM_WARNING = "scored with RANDOM weights (--model random): a plumbing check, the scores mean nothing"
WEAK_MODEL_AUC = 0.9   # a model whose recorded validation AUC is below this is called weak in every record


@dataclass
class XrayRunner:
    """An engine holding the X-ray network, plus the metadata that says how to feed it.

    Call it with aligned crops (N, S, S, 3) RGB uint8 made by `faces.crop.crop_face`
    (or `crop_faces_torch`) with `self.crop_spec`; it returns (fake probabilities (N,), X-ray maps (N, 64, 64)).
    """

    engine: Engine
    metadata: dict
    name: str

    @property
    def crop_spec(self) -> CropSpec:
        return CropSpec.from_dict(self.metadata["crop"])

    @property
    def is_random(self) -> bool:
        return bool(self.metadata.get("random"))

    @property
    def flip(self) -> bool:
        """Whether each face is scored with its mirror image (`models.xray.XrayNet`)."""
        return bool((self.metadata.get("calibration") or {}).get("flip"))

    @property
    def threshold(self) -> float:
        """The video verdict threshold chosen for this model on data (`train/calibrate.py`), stored in its
        checkpoint; `aggregate.DEFAULT_THRESHOLD` when it records none."""
        from ..aggregate import DEFAULT_THRESHOLD

        value = (self.metadata.get("calibration") or {}).get("threshold")
        return DEFAULT_THRESHOLD if value is None else float(value)

    @property
    def threshold_note(self) -> str:
        """Where `threshold` comes from, in words, for summaries and logs."""
        cal = self.metadata.get("calibration") or {}
        if cal.get("threshold") is None:
            return "the default; this model records no calibrated threshold"
        return (f"the model's own: at most {cal['max_false_alarm']:.0%} false alarms on the "
                f"{cal['real_sources']} real videos and photos of its validation identities"
                + (", each face scored with its mirror image" if self.flip else ""))

    @property
    def warning(self) -> str | None:
        """What every result scored by this model must carry about its scores: random weights, or a
        weak model (its checkpoint's validation AUC below `WEAK_MODEL_AUC`); None otherwise."""
        if self.is_random:
            return RANDOM_WARNING
        auc = ((self.metadata.get("provenance") or {}).get("validation") or {}).get("auc")
        if auc is not None and auc < WEAK_MODEL_AUC:
            return (f"a weak model ({self.name}): validation AUC {auc:.2f} on blended fakes of held-out people, "
                    f"below {WEAK_MODEL_AUC}; its verdicts are not reliable")
        return None

    def __call__(self, crops: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Score crops given as a numpy array or a uint8 tensor on any device (the GPU path's crops)."""
        x = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crops))
        x = x.to(self.engine.device).permute(0, 3, 1, 2).float().div_(255.0)
        out = self.engine(x)
        return out["prob"].reshape(-1).cpu().numpy(), out["xray"].cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "arch": self.metadata.get("arch"), "random": self.is_random, "flip": self.flip,
                "threshold": self.threshold, "threshold_note": self.threshold_note, **self.engine.describe()}


def load_xray(model: str | Path | None = None, engine: str = "auto", device: str = "cpu",
              options: TorchOptions | None = None, flip: bool | None = None) -> XrayRunner:
    """Load the X-ray model: `None` → the shipped default, `"random"` → seeded random weights
    (plumbing checks only), a `.safetensors` checkpoint, or an `.onnx` export. `options` tune
    the torch engine (default: `TorchOptions.for_device(device)`); `flip` overrides whether
    faces are scored with their mirror images (`models.xray.XrayNet`; default: as the checkpoint's
    calibration was chosen; the threshold is then the one chosen that way, or none). An `.onnx`
    export scores as it was exported.

    Raises `ModelNotFoundError` with what to do when the weights are not there.
    """
    from ..models.checkpoint import load_checkpoint, random_model
    from ..models.xray import OUTPUT_NAMES

    engine = resolve_engine(engine, device)
    if model is None:
        if not DEFAULT_MODEL.exists():
            raise ModelNotFoundError(NO_MODEL_HELP)
        model = DEFAULT_MODEL
    if str(model) == "random":
        net, meta = random_model(crop=CropSpec().to_dict())
        key, name = f"random-{meta['arch']}", "random"
    else:
        path = Path(model)
        if not path.exists():
            raise ModelNotFoundError(f"X-ray model not found: {path}")
        if path.suffix == ".onnx":
            if engine != "onnxruntime":
                raise ValueError("an .onnx model runs on --engine onnxruntime")
            if flip is not None:
                raise ValueError("an .onnx model scores as it was exported: flip applies to a checkpoint")
            eng = OnnxRuntimeEngine(path, device=device)
            meta = json.loads(eng.session.get_modelmeta().custom_metadata_map.get("facexray", "null") or "null")
            if not meta:
                raise ModelNotFoundError(f"{path} is not a facexray export (no 'facexray' metadata)")
            return XrayRunner(eng, meta, path.name)
        net, meta = load_checkpoint(path)
        key, name = f"{path.stem}-{meta['arch']}", path.name     # the weights' hash alone misses the architecture
    if flip is not None and flip != net.flip:    # the threshold was chosen on other scores: the unflipped one, if any
        net.flip = flip
        meta = {**meta, "calibration": (None if flip else (meta.get("calibration") or {}).get("unflipped"))
                or {"flip": flip}}
    key += "-flip" if net.flip else ""           # nor does it tell the mirror-image average
    size = CropSpec.from_dict(meta["crop"]).size
    eng = create_engine(engine, net, OUTPUT_NAMES, (1, 3, size, size), key=key, device=device, options=options)
    return XrayRunner(eng, meta, name)


def export_xray_onnx(checkpoint: str | Path, out: str | Path, int8_faces: Sequence[np.ndarray] | None = None,
                     int8_source: str = "") -> Path:
    """Export a facexray checkpoint to ONNX (dynamic batch) with its metadata embedded.

    The metadata (crop spec, architecture, provenance) travels in the ONNX file's
    `metadata_props` under "facexray", so `load_xray(out, engine="onnxruntime")`
    and other runtimes know how to feed it. With `int8_faces` (RGB uint8 crops the network
    takes; `facexray.train.dataset.calibration_faces` draws them) the graph is quantized to
    int8 (ONNX Runtime static QDQ, per-channel weights), its activation ranges calibrated
    on those faces; the metadata says so, naming `int8_source`.
    """
    import onnx

    from ..models.checkpoint import load_checkpoint
    from ..models.xray import OUTPUT_NAMES
    from .onnx_engine import export_onnx

    net, meta = load_checkpoint(checkpoint)
    size = CropSpec.from_dict(meta["crop"]).size
    out = Path(out)
    export_onnx(net, out, (1, 3, size, size), OUTPUT_NAMES)
    if int8_faces is not None:
        _quantize_int8(out, int8_faces)
        meta = {**meta, "quantized": {"kind": "int8, ONNX Runtime static QDQ, per-channel weights",
                                      "calibration_dataset": int8_source, "calibration_faces": len(int8_faces)}}
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = "facexray", json.dumps({**meta, "exported_from": Path(checkpoint).name})
    onnx.save(model, str(out))
    return out


def _quantize_int8(path: Path, faces: Sequence[np.ndarray]) -> None:
    """Quantize the ONNX file at `path` in place, activation ranges from `faces` (see `export_xray_onnx`)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.items = iter(faces)

        def get_next(self):
            face = next(self.items, None)
            return None if face is None else {"input": (face.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(pre))
        quantize_static(str(pre), str(path), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
