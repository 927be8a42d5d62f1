"""Snakemake script: generate the synthetic demo cohort (slides, slide table, expression, clinical, truth)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.demo.cohort import DemoOutputs, write_demo_cohort
from workflow_scripts.demo.config import DemoConfig

output = snakemake.output
outputs = DemoOutputs.of(
    table=output.table,
    slides_dir=output.slides,
    mrna=output.mrna,
    mirna=output.mirna,
    clinical=output.clinical,
    truth_dir=output.truth,
)
write_demo_cohort(DemoConfig.from_mapping(snakemake.params.demo), int(snakemake.params.seed), outputs, log)
