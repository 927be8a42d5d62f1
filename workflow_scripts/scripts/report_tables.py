"""Snakemake script: the run's tables as self-contained HTML pages for the report (results/{cohort}/report/)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.report_tables import REPORT_PAGES, write_report_tables

write_report_tables(
    {name: getattr(snakemake.input, name) for name in REPORT_PAGES},
    {name: getattr(snakemake.output, name) for name in REPORT_PAGES},
    float(snakemake.params.ci),
    log=log.info,
)
