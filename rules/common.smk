import difflib
import functools
import os
import re
import sys

import jsonschema
import yaml
from snakemake.utils import min_version, validate

# The DAG reads the slide and QC tables through their format owners in the package.
sys.path.insert(0, workflow.basedir)
from workflow_scripts.analysis.report_labels import (
    map_labels,
    read_named_hti,
    read_named_qc,
    survival_figure_place,
    thumbnail_labels,
)
from workflow_scripts.analysis.report_tables import REPORT_PAGES
from workflow_scripts.demo.config import DemoConfig
from workflow_scripts.demo.planted_features import PlantedFeatures
from workflow_scripts.features.trident_files import find_imported_file
from workflow_scripts.features.trident_export import trident_patch_folder_name
from workflow_scripts.inputs.slidetable import read_slide_table
from workflow_scripts.learning.labels import LabelSettings
from workflow_scripts.learning.splits import SplitSettings
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table
from workflow_scripts.slides.tilingconfig import TilingConfig

min_version("9.0")


configfile: "config/config.yaml"


# A bad config stops the run before any job, with one short line per problem naming the key (and a close match for
# a typo'd key); the schema rules behind each problem are printed only with --verbose or WORKFLOW_CONFIG_VERBOSE=1.
CONFIG_VERBOSE = "--verbose" in sys.argv or os.environ.get(
    "WORKFLOW_CONFIG_VERBOSE", ""
) not in ("", "0")


def config_key_name(path):
    """A config key as the user writes it, from a jsonschema path: e.g. traits[0].source."""
    name = ""
    for part in path:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "(top level)"


def config_problems(error):
    """Short lines naming the key of one schema violation; unknown keys get a close match or the allowed keys."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # the alternative of the value's own type says best what is wrong with it
        same_type = [
            e for e in error.context if e.validator != "type" or e.relative_path
        ]
        return config_problems(
            jsonschema.exceptions.best_match(same_type or error.context)
        )
    key = config_key_name(error.absolute_path)
    prefix = f"{key}." if error.absolute_path else ""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        problems = []
        for unknown in sorted(set(error.instance) - set(allowed), key=str):
            close = difflib.get_close_matches(str(unknown), allowed, n=1)
            hint = (
                f"did you mean {prefix}{close[0]}?"
                if close
                else f"allowed keys: {', '.join(allowed)}"
            )
            problems.append(f"config key {prefix}{unknown} is not allowed; {hint}")
        return problems
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"config key {prefix}{name} is required" for name in missing]
    message = (
        error.message if len(error.message) <= 200 else error.message[:200] + "..."
    )
    return [f"config key {key}: {message} (schema rule {error.validator})"]


def check_config_schema(schema_path):
    """Raise one short message listing every schema violation of the config, before any default is filled in."""
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    if not errors:
        return
    problems = [line for error in errors for line in config_problems(error)]
    message = "config validation failed (config/schema.yaml):\n  " + "\n  ".join(
        problems
    )
    if CONFIG_VERBOSE:
        message += "\n\n" + "\n\n".join(str(error) for error in errors)
    else:
        message += (
            "\n(the schema rules: rerun with --verbose or WORKFLOW_CONFIG_VERBOSE=1)"
        )
    raise ValueError(message)


check_config_schema(os.path.join(workflow.basedir, "config", "schema.yaml"))
validate(config, schema="../config/schema.yaml")


def config_input_paths():
    """Local inputs that must exist before the run, by config key (the files the demo generator writes excepted)."""
    slides = config["slides"]
    paths = {}
    if slides["source"] == "local":
        for key in ("table", "folder"):
            if slides["local"].get(key):
                paths[f"slides.local.{key}"] = slides["local"][key]
    if slides["source"] == "gdc" and slides["gdc"].get("manifest"):
        paths["slides.gdc.manifest"] = slides["gdc"]["manifest"]
    for source in sorted({trait["source"] for trait in config["traits"]}):
        if isinstance(config["expression"].get(source), str):
            paths[f"expression.{source}"] = config["expression"][source]
    if isinstance(config["clinical"]["path"], str):
        paths["clinical.path"] = config["clinical"]["path"]
    for index, entry in enumerate(config["clinical"].get("covariates") or []):
        if isinstance(entry["source"], str):
            paths[f"clinical.covariates[{index}].source"] = entry["source"]
    if slides["source"] == "synthetic":
        generated = {
            os.path.normpath(f"resources/{config['cohort']}/{path}")
            for path in (
                "expression/mrna.tsv",
                "expression/mirna.csv",
                "clinical/data_clinical_patient.txt",
            )
        }
        paths = {
            key: path
            for key, path in paths.items()
            if os.path.normpath(path) not in generated
        }
    return paths


def config_cross_problems():
    """What the schema cannot say: keys that must agree with each other, and local inputs that must exist."""
    names = [trait["name"] for trait in config["traits"]]
    problems = []
    if config["slides"]["source"] == "local" and not any(
        config["slides"]["local"].get(key) for key in ("table", "folder")
    ):
        problems.append(
            "config key slides.local.table or slides.local.folder is required when slides.source is local"
        )
    for key, path in config_input_paths().items():
        if not os.path.exists(path):
            problems.append(
                f"config key {key}: {path!r} does not exist (relative to {os.getcwd()})"
            )
    chosen = config["heterogeneity"]["traits"]
    for name in chosen or []:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = (
                f"did you mean {close[0]}?" if close else f"configured traits: {names}"
            )
            problems.append(
                f"config key heterogeneity.traits: {name!r} is not a configured trait name; {hint}"
            )
    if chosen and len(set(chosen)) != len(chosen):
        problems.append(f"config key heterogeneity.traits: names repeat, got {chosen}")
    if not chosen and len(set(names)) < 2:
        problems.append(
            f"config key traits: heterogeneity needs at least 2 traits, got {names}"
        )
    for index, pair in enumerate(config["survival"]["thresholds"]):
        if pair["high_min"] < pair["low_max"]:
            problems.append(
                f"config key survival.thresholds[{index}]: high_min {pair['high_min']} is below low_max "
                f"{pair['low_max']}"
            )
    return problems + config_settings_problems() + feature_config_problems()


def planted_dim_problems(values):
    """The planted features must have room for every demo trait's dimensions (bad blocks are reported elsewhere)."""
    try:
        planted = PlantedFeatures.from_config(values)
        n_traits = len(DemoConfig.from_mapping(config.get("demo")).traits)
    except ValueError:
        return []  # config_settings_problems names the key
    if n_traits * planted.dims_per_trait <= planted.dim:
        return []
    return [
        f"config key features.import.planted.dim: {planted.dim} is below the {n_traits} demo traits x "
        f"dims_per_trait {planted.dims_per_trait}"
    ]


def feature_config_problems():
    """Keys of the features family that must agree: where the features come from, and the demo's planted ones."""
    features = config["features"]
    imported = features["import"]
    problems = []
    if imported["planted"] and config["slides"]["source"] != "synthetic":
        problems.append(
            "config key features.import.planted: planted features exist only for slides.source synthetic"
        )
    if imported["planted"]:
        problems += planted_dim_problems(imported["planted"])
    if imported["planted"] and imported["folder"]:
        problems.append(
            "config keys features.import.folder and features.import.planted: give one, not both"
        )
    if config["model"]["family"] != "features":
        return problems
    if features["source"] == "import" and not (
        imported["folder"] or imported["planted"]
    ):
        problems.append(
            "config key features.import.folder is required when model.family is features and features.source "
            "is import"
        )
    elif (
        features["source"] == "import"
        and imported["folder"]
        and not os.path.isdir(imported["folder"])
    ):
        problems.append(
            f"config key features.import.folder: {imported['folder']!r} is not a folder (relative to "
            f"{os.getcwd()})"
        )
    if features["source"] == "encoder" and not features["encoder"]["name"]:
        problems.append(
            "config key features.encoder.name is required when features.source is encoder"
        )
    return problems


def config_settings_problems():
    """The checks of the settings classes the jobs build from the config, run now rather than in the jobs."""
    checks = [
        (SplitSettings.from_config, config["splits"]),
        (LabelSettings.from_config, config["labels"]),
        (TilingConfig.from_params, config["tiling"]),
    ]
    if config["slides"]["source"] == "synthetic":
        checks.append((DemoConfig.from_mapping, config["demo"]))
    if config["features"]["import"]["planted"]:
        checks.append(
            (PlantedFeatures.from_config, config["features"]["import"]["planted"])
        )
    problems = []
    for build, section in checks:
        try:
            build(section)
        except ValueError as error:
            problems.append(f"config check failed: {error}")
    return problems


def check_config_across_keys():
    """Raise one short message listing every cross-key problem of the config, before any job."""
    problems = config_cross_problems()
    if problems:
        raise ValueError(
            "config check failed before any job:\n  " + "\n  ".join(problems)
        )


check_config_across_keys()

# Scripts import the package from the repository, also inside per-rule conda environments and on cluster
# nodes (envvars passes the variable on to remote jobs).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p
)


envvars:
    "PYTHONPATH",


# Which config keys change a job's OUTPUT, and which only change how the job runs. Rules pass a section's output
# keys as params (`output_settings`), so editing one of them reruns the jobs (rerun-triggers include params).
# Runtime keys are never params: rules use them in `threads:`/`resources:`, and scripts read them from
# `snakemake.config` (which Snakemake does not track), so editing them reruns nothing. Per-job keys are passed one
# value per job (e.g. `tiling.mpp_overrides`: the slide's own value). Every key of a section is in exactly one list;
# a key added to config/schema.yaml must be classified here, or the workflow refuses to start.
CONFIG_KEYS = {
    "slides": {
        "output": ("source", "exclude", "sample_types", "local"),
        "sections": ("gdc",),
    },
    "slides.gdc": {
        "output": ("api", "project", "manifest"),
        "runtime": ("token_file", "page_size", "retries", "max_concurrent"),
    },
    "tiling": {
        "output": (
            "tile_px",
            "target_mpp",
            "max_background",
            "encoding",
            "jpeg_quality",
            "pen_max_fraction",
            "blur_max_fraction",
            "blur_threshold",
            "min_tiles",
        ),
        "per_job": ("mpp_overrides",),
        "runtime": ("threads",),
    },
    "training": {
        # what changes a training's trajectory (max_evals may also lengthen it); predict depends on none of them
        "output": (
            "input_px",
            "batch_size",
            "learning_rate",
            "evals_per_epoch",
            "lr_patience",
            "lr_factor",
            "stop_patience",
            "max_evals",
            "bn_momentum",
            "mixed_precision",
            "max_val_tiles_per_slide",
            "backend",
            "deterministic",
        ),
        # device and conda_env are runtime on purpose: switching the CPU demo to a GPU (whose numerics differ)
        # must not invalidate models already trained; the dtype policy it implies is in each checkpoint's run key
        "runtime": (
            "workers",
            "predict_batch_size",
            "threads",
            "mem_mb",
            "runtime_min",
            "device",
            "conda_env",
        ),
    },
    # the viewer's slide images: both keys change viewer/index.html
    "viewer": {"output": ("max_px", "jpeg_quality")},
    "model": {"output": ("family",)},
    "features": {"output": ("source",), "sections": ("encoder", "import", "head")},
    # what embed's feature stores depend on (a local weights file is also an input, so editing it re-embeds)
    "features.encoder": {
        "output": (
            "name",
            "weights",
            "input_px",
            "normalisation",
            "pooling",
            "slides_per_job",
        ),
        "runtime": ("batch_size",),
    },
    "features.import": {
        "output": (
            "folder",
            "patch_um",
            "max_unmatched_fraction",
            "encoder_name",
            "planted",
        )
    },
    # what a head's trajectory depends on (with the schedule keys of `training`, HEAD_SCHEDULE_KEYS)
    "features.head": {
        "output": ("kind", "hidden_units", "dropout", "batch_size", "learning_rate")
    },
}


def config_section(section):
    """The config mapping at a dotted section path, e.g. 'slides.gdc'."""
    value = config
    for part in section.split("."):
        value = value.get(part) or {}
    return value


def output_settings(section):
    """The keys of a config section that change the output of the jobs using it: pass these as params."""
    values = config_section(section)
    return {key: values[key] for key in CONFIG_KEYS[section]["output"] if key in values}


for classified_section, kinds in CONFIG_KEYS.items():
    unclassified = set(config_section(classified_section)) - {
        key for keys in kinds.values() for key in keys
    }
    if unclassified:
        raise ValueError(
            f"config keys {sorted(unclassified)} of {classified_section!r} are not classified as output, "
            "per-job or runtime keys in CONFIG_KEYS (rules/common.smk)"
        )


COHORT = config["cohort"]
RESULTS = f"results/{COHORT}"
RESOURCES = f"resources/{COHORT}"
LOGS = f"logs/{COHORT}"
BENCHMARKS = f"benchmarks/{COHORT}"
TRAITS = [trait["name"] for trait in config["traits"]]
TRAIT_BY_NAME = {trait["name"]: trait for trait in config["traits"]}
SPLITS = list(range(config["splits"]["n_splits"]))
SLIDE_SOURCE = config["slides"]["source"]

if len(set(TRAITS)) != len(TRAITS):
    raise ValueError(f"config key 'traits': trait names must be unique, got {TRAITS}")
for missing_source in {t["source"] for t in config["traits"]} - set(
    config["expression"]
):
    raise ValueError(
        f"config key 'expression.{missing_source}' is required by the traits that use it"
    )


wildcard_constraints:
    trait="|".join(re.escape(name) for name in TRAITS),
    split=r"\d+",
    slide_id=r"[^/]+",
    group=r"g\d+",


def slide_table_checkpoint():
    """The checkpoint that writes resources/{cohort}/slides.tsv for this slide source."""
    if SLIDE_SOURCE == "synthetic":
        return checkpoints.demo_cohort
    return checkpoints.slide_table


@functools.lru_cache(maxsize=8)
def read_table_version(reader, path, mtime_ns):
    """A checkpoint's table parsed by its owner once per version: input functions ask for it once per job."""
    return reader(path)


def slide_table(wildcards=None):
    """All slides of the cohort, known once the slide-table checkpoint has run."""
    path = slide_table_checkpoint().get().output.table
    return read_table_version(read_slide_table, path, os.stat(path).st_mtime_ns)


def slide_row(slide_id):
    """The slide-table row of one slide, by id."""
    table = slide_table()
    rows = table[table["slide_id"] == slide_id]
    if rows.empty:
        raise ValueError(f"slide {slide_id!r} is not in the cohort's slide table")
    return rows.iloc[0]


def mpp_override(wildcards):
    """The level-0 um/px assumed for this slide when it has no resolution metadata (tiling.mpp_overrides), or None."""
    return (config["tiling"].get("mpp_overrides") or {}).get(wildcards.slide_id)


def slide_file(wildcards):
    """Where the slide file is or will be (downloaded slides are produced by gdc_download)."""
    return slide_row(wildcards.slide_id)["path"]


def tile_inputs(wildcards):
    """tile_slide's input: a GDC slide's download status (it says where the slide is), else the slide file."""
    if SLIDE_SOURCE == "gdc":
        return {
            "download": f"{RESOURCES}/downloads/{slide_row(wildcards.slide_id)['file_name']}.tsv"
        }
    return {"slide": slide_file(wildcards)}


def excluded_slides_table(wildcards=None):
    """The slides the slide table left out (slides_excluded.tsv); the demo cohort has none (it marks them in QC)."""
    if SLIDE_SOURCE == "synthetic":
        return []
    return slide_table_checkpoint().get().output.excluded


def gdc_slide(file_name):
    """The slide-table row of a GDC slide, by file name (the stable key; ids change)."""
    table = slide_table()
    rows = table[table["file_name"] == file_name]
    if rows.empty:
        raise ValueError(f"slide file {file_name!r} is not in the cohort's slide table")
    return rows.iloc[0]


def qc_rows(wildcards):
    """One QC row per slide: the input of the QC checkpoint."""
    return expand(
        f"{RESULTS}/qc/slides/{{slide_id}}.tsv", slide_id=slide_table()["slide_id"]
    )


def qc_table(wildcards=None):
    """The QC verdict of every slide, known once the QC checkpoint has run."""
    path = checkpoints.qc_summary.get().output.table
    return read_table_version(read_qc_table, path, os.stat(path).st_mtime_ns)


def qc_table_path(wildcards=None):
    """Path of qc/slides.tsv that also makes the DAG wait for the QC checkpoint."""
    return checkpoints.qc_summary.get().output.table


def passed_slide_ids(wildcards=None):
    """Slides that passed QC, which every downstream stage uses."""
    return list(passed_slides(qc_table())["slide_id"])


def passed_stores(wildcards=None):
    """Tile stores of the slides that passed QC."""
    return expand(f"{RESULTS}/tiles/{{slide_id}}.h5", slide_id=passed_slide_ids())


def source_path(entry, folder):
    """Local path of an expression or clinical input: the user's path, or where the GDC or URL copy goes."""
    if isinstance(entry, str):
        return entry
    return f"{RESOURCES}/{folder}/{entry.get('file_name') or entry['gdc_file_id']}"


def expression_file(source):
    """The matrix holding traits of one source (mrna or mirna)."""
    return source_path(config["expression"][source], "expression")


def trait_matrix(wildcards):
    """The expression matrix that holds one trait's row."""
    return expression_file(TRAIT_BY_NAME[wildcards.trait]["source"])


def fetched_sources():
    """Inputs fetched from the GDC by file id or by URL, keyed by their local path; two different sources
    with one local path are a config error naming it."""
    entries = [config["expression"].get("mrna"), config["expression"].get("mirna")]
    folders = ["expression", "expression"]
    entries.append(config["clinical"]["path"])
    folders.append("clinical")
    entries += [entry["source"] for entry in config["clinical"]["covariates"]]
    folders += ["clinical"] * len(config["clinical"]["covariates"])
    fetched = {}
    for entry, folder in zip(entries, folders):
        if isinstance(entry, dict):
            path = source_path(entry, folder)
            if fetched.setdefault(path, entry) != entry:
                raise ValueError(
                    f"config: two different sources are fetched to {path}; give them different file_name values"
                )
    return fetched


# The model family and, for `features`, where each slide's features come from (rules/features.smk).
MODEL_FAMILY = config["model"]["family"]
FEATURE_SOURCE = config["features"]["source"]
FEATURES_DIR = f"{RESULTS}/features"
# TRIDENT's name for the folder of this tiling's patches (e.g. 20x_512px_0px_overlap), used by the export
TRIDENT_FOLDER = trident_patch_folder_name(
    config["tiling"]["target_mpp"], config["tiling"]["tile_px"]
)
PLANTED_FEATURES = (
    config["features"]["import"]["planted"] if SLIDE_SOURCE == "synthetic" else None
)
PLANTED_FOLDER = f"{RESOURCES}/trident/{TRIDENT_FOLDER}/features_planted"
# the keys of `training` a head's trajectory depends on (its batch size and learning rate are features.head's)
HEAD_SCHEDULE_KEYS = (
    "evals_per_epoch",
    "lr_patience",
    "lr_factor",
    "stop_patience",
    "max_evals",
    "mixed_precision",
    "max_val_tiles_per_slide",
    "backend",
    "deterministic",
)


def embed_settings():
    """What a slide's feature store depends on: the source and that source's output keys."""
    section = "features.encoder" if FEATURE_SOURCE == "encoder" else "features.import"
    return {"source": FEATURE_SOURCE} | output_settings(section)


def local_encoder_files():
    """The encoder's model and weights files that are local paths: inputs of embed, so editing them re-embeds."""
    encoder = config["features"]["encoder"]
    return {
        key: encoder[key]
        for key in ("name", "weights")
        if encoder.get(key) and os.path.isfile(encoder[key])
    }


def embed_groups():
    """Groups of features.encoder.slides_per_job QC-passed slides (sorted by id), by group name g0000, g0001, ..."""
    slides = sorted(passed_slide_ids())
    size = config["features"]["encoder"]["slides_per_job"]
    return {
        f"g{start // size:04d}": slides[start : start + size]
        for start in range(0, len(slides), size)
    }


def embed_group_inputs(wildcards):
    """embed's input for the encoder source: the group's tile stores and the encoder's local files."""
    slides = embed_groups().get(wildcards.group)
    if slides is None:
        raise ValueError(f"no embed group {wildcards.group!r} in this cohort")
    stores = expand(f"{RESULTS}/tiles/{{slide_id}}.h5", slide_id=slides)
    return {"stores": stores} | local_encoder_files()


def embed_inputs(wildcards):
    """embed's input for the import source: the slide's tile store and its imported file (or planted folder)."""
    inputs = {"store": f"{RESULTS}/tiles/{wildcards.slide_id}.h5"}
    if PLANTED_FEATURES:
        return inputs | {"imported": PLANTED_FOLDER}
    found = find_imported_file(
        config["features"]["import"]["folder"],
        wildcards.slide_id,
        os.path.basename(str(slide_row(wildcards.slide_id)["path"])),
    )
    # a slide without a file still runs: embed records it as a failure (features/summary.tsv)
    return inputs | ({"imported": str(found)} if found else {})


def feature_rows(wildcards):
    """The feature row of every QC-passed slide (encoder: the group folders holding them), for the checkpoint."""
    if FEATURE_SOURCE == "encoder":
        return expand(f"{FEATURES_DIR}/encoded/{{group}}", group=embed_groups())
    return expand(
        f"{FEATURES_DIR}/slides/{{slide_id}}.tsv", slide_id=passed_slide_ids()
    )


def analysis_qc_path(wildcards=None):
    """The QC table of the stages after the model: qc/slides.tsv, or features/qc.tsv in the features family."""
    if MODEL_FAMILY == "features":
        return checkpoints.features_summary.get().output.qc
    return qc_table_path()


def analysed_slide_ids(wildcards=None):
    """Slides the model scores: QC-passed, and in the features family also with usable features."""
    path = analysis_qc_path()
    table = read_table_version(read_qc_table, path, os.stat(path).st_mtime_ns)
    return list(passed_slides(table)["slide_id"])


def analysed_stores(wildcards=None):
    """Tile stores of the analysed slides."""
    return expand(f"{RESULTS}/tiles/{{slide_id}}.h5", slide_id=analysed_slide_ids())


def analysed_features(wildcards=None):
    """Feature stores of the analysed slides (features family); for the encoder source, the group folders holding
    them (scripts pick the analysed slides' files with featurestore.feature_files)."""
    analysed = analysed_slide_ids()
    if FEATURE_SOURCE == "encoder":
        wanted = set(analysed)
        groups = [
            name for name, slides in embed_groups().items() if wanted & set(slides)
        ]
        return expand(f"{FEATURES_DIR}/encoded/{{group}}", group=groups)
    return expand(f"{FEATURES_DIR}/{{slide_id}}.h5", slide_id=analysed)


def head_schedule_settings():
    """The `training` keys a head's trajectory depends on: params of train_head."""
    return {
        key: config["training"][key]
        for key in HEAD_SCHEDULE_KEYS
        if key in config["training"]
    }


def trait_models(wildcards):
    """Every split's model of one trait, ordered by split."""
    return expand(
        f"{RESULTS}/models/{wildcards.trait}/split_{{split}}/model.keras", split=SPLITS
    )


def final_outputs(wildcards):
    """Everything a full run produces: evaluation, heterogeneity and survival."""
    return [
        f"{RESULTS}/qc/slides.tsv",
        f"{RESULTS}/labels/summary.tsv",
        f"{RESULTS}/evaluation/table1.tsv",
        f"{RESULTS}/evaluation/spearman.tsv",
        f"{RESULTS}/heterogeneity/hti.tsv",
        f"{RESULTS}/qupath",
        f"{RESULTS}/viewer",
        f"{RESULTS}/survival/logrank.tsv",
        f"{RESULTS}/survival/cox.tsv",
        *(f"{RESULTS}/report/{name}.html" for name in REPORT_PAGES),
        f"{RESULTS}/report/maps",
        f"{RESULTS}/report/thumbnails",
        *([f"{FEATURES_DIR}/summary.tsv"] if MODEL_FAMILY == "features" else []),
    ]


def training_threads():
    """CPU threads of a training or inference job: training.threads, else the decoding workers plus the loop's."""
    return config["training"]["threads"] or config["training"]["workers"] + 1


# training.conda_env picks the software environment of both rules (used with --software-deployment-method conda);
# each choice is its own file, so switching leaves envs/training.yaml, and the CPU env built from it, untouched.
TRAINING_CONDA_ENVS = {
    "cpu": "../envs/training.yaml",
    "gpu": "../envs/training_gpu.yaml",
    "jax_gpu": "../envs/training_jax_gpu.yaml",
}


def training_conda_env():
    """The conda env file of the training and inference rules, chosen by config training.conda_env."""
    return TRAINING_CONDA_ENVS[config["training"]["conda_env"]]


# Labels and subcategories of the report's per-slide and per-figure items (rules/tiling.smk, heterogeneity.smk).
def report_hti(path):
    """hti.tsv with the slides' short names, parsed once per version of the file (one map label asks per slide)."""
    return read_table_version(read_named_hti, path, os.stat(path).st_mtime_ns)


def report_map_labels(wildcards, input):
    """Labels of one heterogeneity map in the report: short slide name, HTI and HTA."""
    return map_labels(wildcards.name, report_hti(input.hti))


def report_thumbnail_labels(wildcards, input):
    """Labels of one QC thumbnail in the report: short slide name and QC verdict."""
    path = input.qc
    qc = read_table_version(read_named_qc, path, os.stat(path).st_mtime_ns)
    return thumbnail_labels(wildcards.name, qc)


def report_thumbnails(wildcards):
    """The QC thumbnail of every slide of the cohort (tile_slide writes one also for a slide that fails)."""
    return expand(
        f"{RESULTS}/qc/thumbnails/{{slide_id}}.png", slide_id=slide_table()["slide_id"]
    )


def report_survival_subcategory(wildcards):
    """Subcategory of one survival figure in the report: Kaplan-Meier, Figure 5a, Figure 5b or Figure 6."""
    return survival_figure_place(wildcards.name)[0]


def report_survival_labels(wildcards):
    """Label of one survival figure in the report, from its file name."""
    return {"figure": survival_figure_place(wildcards.name)[1]}
