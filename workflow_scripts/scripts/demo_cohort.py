"""Snakemake script: generate the synthetic demo cohort (slides, slide table, expression, clinical, truth)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 (injected by Snakemake)

from workflow_scripts.demo.cohort import DemoConfig, write_demo_cohort  # noqa: E402

write_demo_cohort(
    DemoConfig.from_mapping(snakemake.params.demo),  # noqa: F821
    seed=int(snakemake.params.seed),  # noqa: F821
    table=snakemake.output.table,  # noqa: F821
    slides_dir=snakemake.output.slides,  # noqa: F821
    mrna=snakemake.output.mrna,  # noqa: F821
    mirna=snakemake.output.mirna,  # noqa: F821
    clinical=snakemake.output.clinical,  # noqa: F821
    truth_dir=snakemake.output.truth,  # noqa: F821
    log=log,
)
