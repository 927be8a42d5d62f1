"""Snakemake script: ensemble members, slide scores, Table 1, Spearman correlations and Figure 2."""

from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.analysis.ensemble import choose_members, read_metrics, write_members  # noqa: E402
from workflow_scripts.analysis.evaluate import (  # noqa: E402
    assign_sets,
    collect_slide_scores,
    plot_figure2,
    spearman_table,
    table1,
)
from workflow_scripts.common.tables import write_tsv  # noqa: E402
from workflow_scripts.learning.labels import read_labels  # noqa: E402
from workflow_scripts.learning.splits import read_splits, held_out_patients  # noqa: E402
from workflow_scripts.slides.qc_table import read_passed_slides  # noqa: E402

traits = list(snakemake.params.traits)  # noqa: F821
ensemble = snakemake.params.ensemble  # noqa: F821
evaluation = snakemake.params.evaluation  # noqa: F821
seed = int(snakemake.params.seed)  # noqa: F821
prediction_dirs = {Path(path).name: path for path in snakemake.input.predictions}  # noqa: F821
missing = [trait for trait in traits if trait not in prediction_dirs]
if missing:
    raise ValueError(f"no prediction directory for traits {missing} among {list(prediction_dirs)}")

members = choose_members(read_metrics(snakemake.input.metrics), int(ensemble["top_k"]))  # noqa: F821
log.info("ensemble members:\n%s", members[members["chosen"]].to_string(index=False))
labels = read_labels(snakemake.input.labels)  # noqa: F821
held_out = held_out_patients(read_splits(snakemake.input.splits))  # noqa: F821
slides = read_passed_slides(snakemake.input.qc)  # noqa: F821
scores = collect_slide_scores({trait: prediction_dirs[trait] for trait in traits}, members, float(ensemble["threshold"]), slides)
slide_table = assign_sets(scores, labels, held_out)
log.info("scored %d slides for %d traits", scores["slide_id"].nunique(), len(traits))
summary = table1(slide_table, traits, int(evaluation["bootstrap"]), float(evaluation["ci"]), seed)
log.info("table 1:\n%s", summary.to_string(index=False))

write_members(members, snakemake.output.members)  # noqa: F821
write_tsv(slide_table, snakemake.output.slide_scores)  # noqa: F821
write_tsv(summary, snakemake.output.table1)  # noqa: F821
write_tsv(spearman_table(slide_table, labels), snakemake.output.spearman)  # noqa: F821
plot_figure2(slide_table, traits, snakemake.output.figure_png, snakemake.output.figure_pdf, seed)  # noqa: F821
log.info("evaluation written")
