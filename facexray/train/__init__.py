"""Training: dataset preparation, blending (BI, SBI), Face-Cutout, dataset, losses, loop, evaluation."""
