"""Thin entry points that Snakemake rules call through `script:`; all logic lives in the package."""
