"""Stage 2, slides: reading whole-slide images, tissue and artefact masks, tiling, slide QC and the tile store."""
