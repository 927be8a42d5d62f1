"""Snakemake script: the traits whose cartographies feed the heterogeneity analysis (configured or top 2 by AUC)."""

import pandas as pd

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.common.tables import read_table, write_tsv  # noqa: E402
from workflow_scripts.analysis.survival import choose_traits  # noqa: E402

table1 = read_table(snakemake.input.table1, ["trait", "test_auc_ensemble"])  # noqa: F821
configured = snakemake.params.traits  # noqa: F821
traits = choose_traits(table1, list(configured) if configured else None, int(snakemake.params.n))  # noqa: F821
log.info("heterogeneity traits: %s (%s)", traits, "configured" if configured else "best ensemble test AUC")
write_tsv(pd.DataFrame({"trait": traits}), snakemake.output.traits)  # noqa: F821
