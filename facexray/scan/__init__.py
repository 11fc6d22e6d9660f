"""Bulk scanning: find the videos, run the pipeline on each, write one record per file."""

from .discover import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, discover
from .results import ResultWriter
from .runner import ScanConfig, run_scan

__all__ = ["MEDIA_EXTENSIONS", "VIDEO_EXTENSIONS", "discover", "ResultWriter", "ScanConfig", "run_scan"]
