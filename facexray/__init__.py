"""facexray: Face X-ray deepfake detection for video at scale."""

__version__ = "0.1.0"
