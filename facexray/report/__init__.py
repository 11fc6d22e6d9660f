"""Showing the evidence: X-ray heat maps over faces, annotated videos, and the HTML scan report.

`draw` holds the small drawing functions (heat map colours, overlays, boxes and labels)
that every output shares; `annotate` writes annotated videos and images; `html` builds
the self-contained report.
"""
