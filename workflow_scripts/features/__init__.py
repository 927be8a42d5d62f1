"""Stage 4b, the features model family: feature stores, encoders, and imported TRIDENT/CLAM/STAMP files."""
