"""Stage 1, inputs: GDC queries and downloads, the slide table, TCGA barcodes, expression matrices, clinical tables."""
