# Spatial gene expression and tumour heterogeneity inferred from H&E whole-slide images.
# Reimplements Levy-Jurgenson et al., Sci Rep 2020; see README.md.


include: "rules/common.smk"
include: "rules/inputs.smk"
include: "rules/tiling.smk"
include: "rules/labels.smk"
include: "rules/features.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"
include: "rules/heterogeneity.smk"
include: "rules/report.smk"


report: "rules/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs,
