"""Negative control: the demo generator with `demo.signal: 0` (traits invisible) must give chance-level AUCs.

Runs the real workflow on the default demo config with only the signal strength changed, then prints Table 1's
ensemble AUCs with their 95% bootstrap intervals and a two-sided permutation p-value of each AUC against 0.5 (labels
shuffled over the set's slides). A set passes when its interval contains 0.5 or, for sets too small for a bootstrap
interval to mean anything (3 test slides: every resample of 1 positive and 2 negatives ranks them alike, so the
interval collapses to the observed AUC), when the permutation p-value is at least 0.05. Not part of the test suite
(it takes as long as `make demo`); run it by hand:

    .venv/bin/python tests/signal_zero.py [workdir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_runner import make_workdir, snakemake  # noqa: E402
from workflow_scripts.analysis.evaluation_tables import read_slide_scores, read_table1  # noqa: E402

COLUMNS = ("test", "ood_near", "ood_all")
PERMUTATIONS = 10_000


def permutation_p_value(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value of |AUC - 0.5| under random relabelling of the same slides."""
    rng = np.random.default_rng(seed)
    observed = abs(roc_auc_score(labels, scores) - 0.5)
    null = np.array([abs(roc_auc_score(rng.permutation(labels), scores) - 0.5) for _ in range(PERMUTATIONS)])
    return float((1 + np.count_nonzero(null >= observed - 1e-12)) / (1 + PERMUTATIONS))


def main(workdir: Path) -> int:
    """Run the signal-0 demo and report whether every ensemble AUC is consistent with chance."""
    make_workdir(workdir, {"demo": {"signal": 0.0}, "cohort": "demo"})
    snakemake(workdir, "--cores", "2", "--until", "evaluate", timeout=7200)
    table = read_table1(workdir / "results/demo/evaluation/table1.tsv")
    scores = read_slide_scores(workdir / "results/demo/evaluation/slide_scores.tsv")
    ensemble = scores[scores["model"] == "ensemble"]
    failures = 0
    print("trait\tset\tn\tAUC\t95% CI\tpermutation p\tconsistent with chance")
    for _, row in table.iterrows():
        for name in COLUMNS:
            auc = row[f"{name}_auc_ensemble"]
            low, high = row[f"{name}_auc_ensemble_ci_low"], row[f"{name}_auc_ensemble_ci_high"]
            rows = ensemble[(ensemble["trait"] == row["trait"]) & (ensemble["set"] == name)]
            p_value = permutation_p_value(rows["label"].to_numpy(), rows["score"].to_numpy())
            chance = bool(low <= 0.5 <= high) or p_value >= 0.05
            failures += not chance
            interval = f"[{low:.3f}, {high:.3f}]"
            print(f"{row['trait']}\t{name}\t{row[f'n_{name}']}\t{auc:.3f}\t{interval}\t{p_value:.3f}\t{chance}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/signal_zero")))
