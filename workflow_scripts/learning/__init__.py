"""Stages 3-4, learning: percentile labels, patient splits, the tile pipeline, Inception v3 training and inference."""
