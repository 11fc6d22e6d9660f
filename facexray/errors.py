"""Typed errors: each names what went wrong in words a user can act on."""


class FacexrayError(Exception):
    """Base class of every error facexray raises on purpose."""


class DecodeError(FacexrayError):
    """An input could not be opened or decoded; `reason` says why in a few words."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelNotFoundError(FacexrayError):
    """Weights were asked for but are not where they were looked for."""


class CheckpointError(FacexrayError):
    """A weights file is unreadable, is not a facexray checkpoint, or does not fit its architecture."""


class CropSpecMismatch(FacexrayError):
    """A model was trained on a different crop than the one it is asked to score."""


class BackendUnavailable(FacexrayError, RuntimeError):
    """An optional backend (TensorRT, DALI, a CUDA device) was asked for but is not there; the message says what to install."""
