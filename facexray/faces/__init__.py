"""Faces: detection (RetinaFace), the crop function, and tracking."""
