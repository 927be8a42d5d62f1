"""The synthetic demo cohort only: slide layouts and images with planted truth, omics tables, an Aperio slide writer."""
