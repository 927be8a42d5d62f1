"""Test rig for running the workflow under a real single-node Slurm (see cluster.py)."""
