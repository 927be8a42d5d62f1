"""Snakemake script: HTI, HTA (with permutation p-values) and heterogeneity maps per slide."""

from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.common.atomic import atomic_path  # noqa: E402
from workflow_scripts.analysis.cartography import read_cartography, read_store_layout  # noqa: E402
from workflow_scripts.common.seeds import stable_seed  # noqa: E402
from workflow_scripts.common.tables import read_table, write_tsv  # noqa: E402
from workflow_scripts.slides.qc_table import read_passed_slides  # noqa: E402
from workflow_scripts.analysis.heterogeneity import (  # noqa: E402
    combination_counts,
    combination_label,
    hta_test,
    hti,
    select_traits,
)
from workflow_scripts.analysis.maps import plot_gallery, plot_map  # noqa: E402

traits = read_table(snakemake.input.traits, ["trait"])["trait"].astype(str).tolist()  # noqa: F821
region = int(snakemake.params.hta_region)  # noqa: F821
seed = int(snakemake.params.seed)  # noqa: F821
permutations = int(snakemake.params.permutations)  # noqa: F821
slides = read_passed_slides(snakemake.input.qc)  # noqa: F821
stores = {Path(path).stem: path for path in snakemake.input.stores}  # noqa: F821
cartography_dir = Path(snakemake.input.cartography)  # noqa: F821
names = [combination_label(index, traits) for index in range(1, 2 ** len(traits))]

rows = []
tensors = {}
with atomic_path(snakemake.output.maps) as maps:  # noqa: F821
    maps.mkdir()
    for slide_id, patient_id in zip(slides["slide_id"], slides["patient_id"]):
        path = cartography_dir / f"{slide_id}.h5"
        tensor, tensor_traits, _ = read_cartography(path)
        tensor = select_traits(tensor, tensor_traits, traits, str(path))
        tensors[slide_id] = tensor
        counts = combination_counts(tensor)
        total = counts.sum()
        spatial = hta_test(tensor, region, permutations, stable_seed(seed, slide_id))
        row = {"slide_id": slide_id, "patient_id": patient_id, "traits": "+".join(traits),
               "n_positive_tiles": int(total), "hti": hti(tensor), "hta": spatial.hta, "hta_p": spatial.p_value,
               "hta_p_clt": spatial.p_value_clt}
        row |= {f"p_{name}": (count / total if total else np.nan) for name, count in zip(names, counts)}
        rows.append(row)
        title = f"{slide_id}\nHTI {row['hti']:.2f}  HTA {spatial.hta:.2f} (p {spatial.p_value:.3g}, region {region})"
        plot_map(tensor, traits, maps / f"{slide_id}.png", title)
        plot_map(tensor, traits, maps / f"{slide_id}.overlay.png", title, read_store_layout(stores[slide_id], True))
        log.info("%s: HTI %.3f HTA %.3f p %.3g (%d positive tiles)", slide_id, row["hti"], spatial.hta, spatial.p_value, total)
    table = pd.DataFrame(rows)
    ordered = table.sort_values(["hti", "slide_id"], ascending=[False, True], na_position="last")
    picks = ordered.iloc[np.unique(np.linspace(0, len(ordered) - 1, min(len(ordered), 24)).round().astype(int))]
    gallery = [(sid, float(value), tensors[sid]) for sid, value in zip(picks["slide_id"], picks["hti"])]
    plot_gallery(gallery, traits, snakemake.output.gallery)  # noqa: F821
    write_tsv(table, snakemake.output.hti)  # noqa: F821
log.info("heterogeneity of %d slides written", len(rows))
