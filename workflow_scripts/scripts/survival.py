"""Snakemake script: survival by heterogeneity (KM, log-rank, Cox) and the paper's Figures 5a, 5b and 6."""

import pandas as pd

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.common.atomic import atomic_path  # noqa: E402
from workflow_scripts.common.tables import read_table, write_tsv  # noqa: E402
from workflow_scripts.learning.labels import read_labels  # noqa: E402
from workflow_scripts.learning.splits import read_splits, held_out_patients  # noqa: E402
from workflow_scripts.analysis.survival import (  # noqa: E402
    category_groups,
    cox_models,
    expression_cohort,
    expression_logrank,
    hti_groups,
    logrank_table,
    plot_distributions,
    plot_km,
    survival_cohort,
    survival_patients,
    threshold_name,
)

traits = read_table(snakemake.input.traits, ["trait"])["trait"].astype(str).tolist()  # noqa: F821
thresholds = list(snakemake.params.survival["thresholds"])  # noqa: F821
hti_table = read_table(snakemake.input.hti, ["slide_id", "patient_id", "hti"])  # noqa: F821
clinical = read_table(snakemake.input.clinical, ["patient_id", "os_months", "os_event"])  # noqa: F821
labels = read_labels(snakemake.input.labels)  # noqa: F821
held_out = held_out_patients(read_splits(snakemake.input.splits))  # noqa: F821

patients = survival_patients(labels, held_out, traits)
cohort = survival_cohort(hti_table, clinical, patients)
log.info("survival cohort: %d patients (%d events) of %d selected", len(cohort), int(cohort["os_event"].sum()), len(patients))
logrank = logrank_table(cohort, traits, thresholds)

with atomic_path(snakemake.output.figures) as figures:  # noqa: F821
    figures.mkdir()
    for threshold in thresholds:
        low_max, high_min = float(threshold["low_max"]), float(threshold["high_min"])
        low, high = hti_groups(cohort, low_max, high_min)
        row = logrank[(logrank["low_max"] == low_max) & (logrank["high_min"] == high_min)].iloc[0]
        title = f"HTI ({' + '.join(traits)}): > {high_min:g} vs <= {low_max:g}, log-rank p = {row['p_value']:.3g}"
        plot_km({f"HTI <= {low_max:g}": low, f"HTI > {high_min:g}": high}, title,
                figures / f"km_hti_{threshold_name(low_max, high_min)}.png")
    expression_rows = []
    for trait in traits:
        expression = expression_cohort(labels, clinical, trait)
        result = expression_logrank(expression, trait)
        expression_rows.append(result)
        plot_km({f"{trait} low": expression[expression["label"] == 0], f"{trait} high": expression[expression["label"] == 1]},
                f"{trait} bulk expression label, log-rank p = {result['p_value']:.3g}", figures / f"figure5a_{trait}.png")
    labelled = cohort.merge(labels[labels["trait"].isin(traits)][["patient_id", "trait", "median_label"]], on="patient_id")
    panels = []
    for trait in traits:
        rows = labelled[labelled["trait"] == trait].assign(
            expression=lambda frame: frame["median_label"].map({0: "below median", 1: "above median"}))
        panels.append((f"HTI by {trait} expression", category_groups(rows, "expression")))
    plot_distributions(panels, "HTI", figures / "figure5b.png")
    plot_distributions([("HTI by ER status", category_groups(cohort, "er_status")),
                        ("HTI by PAM50 subtype", category_groups(cohort, "subtype"))], "HTI", figures / "figure6.png")
write_tsv(pd.concat([logrank, pd.DataFrame(expression_rows)], ignore_index=True), snakemake.output.logrank)  # noqa: F821
write_tsv(cox_models(cohort), snakemake.output.cox)  # noqa: F821
write_tsv(cohort, snakemake.output.cohort)  # noqa: F821
log.info("survival written:\n%s", logrank.to_string(index=False))
