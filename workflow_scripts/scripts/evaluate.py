"""Snakemake script: ensemble members, slide scores, Table 1, Spearman correlations and Figure 2."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.evaluate import EvaluationInputs, EvaluationOutputs, write_evaluation

write_evaluation(
    EvaluationInputs(snakemake.input.predictions, snakemake.input.metrics, snakemake.input.histories,
                     snakemake.input.labels, snakemake.input.splits, snakemake.input.qc),
    EvaluationOutputs(snakemake.output.members, snakemake.output.slide_scores, snakemake.output.table1,
                      snakemake.output.spearman, snakemake.output.figure_png, snakemake.output.figure_pdf),
    list(snakemake.params.traits),
    snakemake.params.ensemble,
    snakemake.params.evaluation,
    int(snakemake.params.seed),
    log,
)
log.info("evaluation written")
