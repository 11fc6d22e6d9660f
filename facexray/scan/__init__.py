"""Bulk scanning: find the videos, run the pipeline on each, write one record per file."""

from .discover import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, discover
from .results import ResultWriter
from .runner import ScanConfig, ScanReport, record_of, run_scan, scan

__all__ = ["MEDIA_EXTENSIONS", "VIDEO_EXTENSIONS", "discover", "ResultWriter", "ScanConfig", "ScanReport",
           "record_of", "run_scan", "scan"]
