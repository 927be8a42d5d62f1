"""Snakemake script: generate the synthetic demo cohort (slides, slide table, expression, clinical, truth)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 (injected by Snakemake)

from workflow_scripts.demo.cohort import DemoOutputs, write_demo_cohort  # noqa: E402
from workflow_scripts.demo.config import DemoConfig  # noqa: E402

output = snakemake.output  # noqa: F821
outputs = DemoOutputs.of(
    table=output.table,
    slides_dir=output.slides,
    mrna=output.mrna,
    mirna=output.mirna,
    clinical=output.clinical,
    truth_dir=output.truth,
)
write_demo_cohort(DemoConfig.from_mapping(snakemake.params.demo), int(snakemake.params.seed), outputs, log)  # noqa: F821
