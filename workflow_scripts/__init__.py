"""Spatial expression and tumour heterogeneity from H&E whole-slide images (Levy-Jurgenson et al. 2020)."""

__version__ = "0.1.0"
