"""Bulk scanning: find the videos, run the pipeline on each, write one record per file."""

import importlib

from .discover import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, discover  # (the function, not its module of that name)
from .results import ResultWriter

# Imported when first used: `facexray.scan.config` (the CLI's --help) must not pull in the pipeline's networks.
_LAZY = {"ScanConfig": "config", "ScanReport": "runner", "record_of": "runner", "run_scan": "runner", "scan": "runner"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MEDIA_EXTENSIONS", "VIDEO_EXTENSIONS", "discover", "ResultWriter", "ScanConfig", "ScanReport",
           "record_of", "run_scan", "scan"]
