"""Negative control: the demo generator with `demo.signal: 0` (traits invisible) must give chance-level AUCs.

Runs the real workflow on the default demo config with only the signal strength changed, then prints Table 1's
ensemble AUCs with their 95% bootstrap intervals and checks that each interval contains 0.5. Not part of the test
suite (it takes as long as `make demo`); run it by hand:

    .venv/bin/python tests/signal_zero.py [workdir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_runner import make_workdir, snakemake  # noqa: E402

COLUMNS = ("test", "ood_near", "ood_all")


def main(workdir: Path) -> int:
    """Run the signal-0 demo and report whether every ensemble AUC interval contains 0.5."""
    make_workdir(workdir, {"demo": {"signal": 0.0}, "cohort": "demo"})
    snakemake(workdir, "--cores", "2", "--until", "evaluate", timeout=7200)
    table = pd.read_csv(workdir / "results/demo/evaluation/table1.tsv", sep="\t")
    failures = 0
    print("trait\tset\tn\tAUC\t95% CI\tcontains 0.5")
    for _, row in table.iterrows():
        for name in COLUMNS:
            prefix = "test" if name == "test" else name
            auc = row[f"{prefix}_auc_ensemble"]
            low, high = row[f"{prefix}_auc_ensemble_ci_low"], row[f"{prefix}_auc_ensemble_ci_high"]
            contains = bool(low <= 0.5 <= high)
            failures += not contains
            print(f"{row['trait']}\t{name}\t{row[f'n_{name}']}\t{auc:.3f}\t[{low:.3f}, {high:.3f}]\t{contains}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/signal_zero")))
