"""Shared plumbing of every stage: atomic writes, job logs and the one TSV reader and writer."""
