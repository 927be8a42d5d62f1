"""Config mistakes stop the run before any job, in a short message naming the key: closed schema objects, bounds
the jobs' settings classes agree with, cross-key checks, and README examples that validate."""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from workflow_runner import REPO_ROOT, deep_update, make_workdir, snakemake

SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
SHIPPED_CONFIGS = ("config.yaml", "tcga_brca.yaml", "tcga_luad.yaml", "example_own_cohort.yaml")
# Free-form maps (slide id -> value): their keys are data, not settings; their values are typed by the schema.
OPEN_MAPS = {"properties.tiling.properties.mpp_overrides"}


def schema_objects(node: object, path: str = "") -> list[tuple[str, dict]]:
    """Every object schema (type object, or with properties) anywhere in the schema, with its path."""
    found = []
    if isinstance(node, dict):
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "object" in types or "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            found += schema_objects(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += schema_objects(value, f"{path}[{index}]")
    return found


def test_every_schema_object_closes_its_keys() -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    objects = schema_objects(schema)
    paths = [path for path, _ in objects]
    # the walk reaches nested objects, array items and definitions
    assert "properties.demo.properties.traits.items" in paths
    assert "properties.survival.properties.thresholds.items" in paths
    assert "definitions.source_file.oneOf[1]" in paths
    open_objects = [
        path for path, node in objects if node.get("additionalProperties") is not False and path not in OPEN_MAPS
    ]
    assert not open_objects, f"schema objects accepting unknown keys: {open_objects}"
    for path in OPEN_MAPS:
        node = dict(objects)[path]
        assert isinstance(node["additionalProperties"], dict) and "properties" not in node


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_validate(name: str) -> None:
    validate(yaml.safe_load((REPO_ROOT / "config" / name).read_text()), schema=str(SCHEMA_PATH))


def dry_run_output(tmp_path: Path, overrides: dict, *args: str) -> tuple[int, str, Path]:
    workdir = make_workdir(tmp_path, overrides)
    process = snakemake(workdir, "-n", "--cores", "1", *args, check=False)
    return process.returncode, process.stdout + process.stderr, workdir


def test_unknown_demo_key_is_named_with_a_close_match(tmp_path: Path) -> None:
    returncode, output, workdir = dry_run_output(tmp_path, {"demo": {"n_patient": 20}})
    assert returncode != 0
    assert "demo.n_patient" in output and "did you mean demo.n_patients?" in output
    assert not (workdir / "resources").exists()


def test_typo_gives_a_short_message_without_the_schema(tmp_path: Path) -> None:
    returncode, output, _ = dry_run_output(tmp_path, {"tiling": {"tile_pz": 256}})
    assert returncode != 0
    assert "config key tiling.tile_pz is not allowed; did you mean tiling.tile_px?" in output
    assert "Failed validating" not in output and "'properties'" not in output
    assert len(output.strip().splitlines()) <= 12, output


def test_verbose_env_adds_the_schema_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_CONFIG_VERBOSE", "1")
    returncode, output, _ = dry_run_output(tmp_path, {"tiling": {"tile_pz": 256}})
    assert returncode != 0
    assert "did you mean tiling.tile_px?" in output and "Failed validating" in output


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            {"heterogeneity": {"traits": ["MKI68", "miR-17-5p"]}},
            ["config key heterogeneity.traits: 'MKI68' is not a configured trait name; did you mean MKI67?"],
        ),
        (
            {"traits": [{"name": "MKI67", "source": "mrna", "id": "MKI67|4288"}]},
            ["config key traits: heterogeneity needs at least 2 traits"],
        ),
        (
            {"slides": {"source": "local", "local": {"table": "missing/slides.tsv"}}},
            # the demo's expression and clinical paths are not generated for a local source
            ["slides.local.table: 'missing/slides.tsv' does not exist", "expression.mrna:", "expression.mirna:",
             "clinical.path:"],
        ),
        (
            {"slides": {"source": "local", "local": {"folder": "missing_folder"}}},
            ["slides.local.folder: 'missing_folder' does not exist"],
        ),
        (
            {"slides": {"source": "local"}},
            ["slides.local.table or slides.local.folder is required"],
        ),
        (
            {"slides": {"source": "gdc", "gdc": {"manifest": "missing_manifest.txt"}}},
            ["slides.gdc.manifest: 'missing_manifest.txt' does not exist"],
        ),
        (
            {"expression": {"mrna": "missing/mrna.tsv"}},
            ["expression.mrna: 'missing/mrna.tsv' does not exist"],
        ),
        (
            {"clinical": {"path": "missing/clinical.txt"}},
            ["clinical.path: 'missing/clinical.txt' does not exist"],
        ),
        (
            {"survival": {"thresholds": [{"low_max": 0.6, "high_min": 0.4}]}},
            ["survival.thresholds[0]: high_min 0.4 is below low_max 0.6"],
        ),
        ({"splits": {"test_fraction": 0.5, "val_fraction": 0.5}}, ["test_fraction + val_fraction must be < 1"]),
        ({"labels": {"low_percentile": 50, "high_percentile": 50}}, ["low_percentile < high_percentile"]),
        ({"demo": {"slide_size": [96, 96], "cell_px": 192}}, ["demo.slide_size must be"]),
        ({"demo": {"regions": [3, 2]}}, ["demo.regions must be"]),
        ({"model": {"family": "features"}}, ["features.import.folder is required when model.family is features"]),
        (
            {"model": {"family": "features"}, "features": {"import": {"folder": "missing_features"}}},
            ["features.import.folder: 'missing_features' is not a folder"],
        ),
        (
            {"model": {"family": "features"}, "features": {"source": "encoder"}},
            ["features.encoder.name is required when features.source is encoder"],
        ),
        (
            {"features": {"import": {"folder": ".", "planted": {"dim": 8}}}},
            ["features.import.folder and features.import.planted: give one, not both"],
        ),
        (
            {"features": {"import": {"planted": {"dim": 3, "dims_per_trait": 2}}}},
            ["features.import.planted.dim: 3 is below the 2 demo traits x dims_per_trait 2"],
        ),
    ],
)
def test_cross_key_problem_stops_the_dry_run(tmp_path: Path, overrides: dict, fragments: list[str]) -> None:
    returncode, output, workdir = dry_run_output(tmp_path, overrides)
    assert returncode != 0, output[-2000:]
    assert "config check failed before any job" in output
    for fragment in fragments:
        assert fragment in output, output[-3000:]
    assert not (workdir / "resources").exists() and not (workdir / "results").exists()


def test_existing_local_inputs_pass_the_checks(tmp_path: Path) -> None:
    overrides = {
        "slides": {"source": "local", "local": {"table": "in/slides.tsv"}},
        "expression": {"mrna": "in/mrna.tsv", "mirna": "in/mirna.csv"},
        "clinical": {"path": "in/clinical.txt"},
    }
    workdir = make_workdir(tmp_path, overrides)
    (workdir / "in").mkdir()
    for name in ("slides.tsv", "mrna.tsv", "mirna.csv", "clinical.txt"):
        (workdir / "in" / name).write_text("x\n")
    process = snakemake(workdir, "-n", "--cores", "1", check=False)
    assert "config check failed" not in process.stdout + process.stderr


# --- bounds: the value at the edge passes the schema and the code's settings class; just outside fails the schema


def tiling_check(section: dict) -> None:
    from workflow_scripts.slides.tilingconfig import TilingConfig

    TilingConfig.from_params(section)


def training_check(section: dict) -> None:
    from workflow_scripts.learning.settings import TrainingSettings

    TrainingSettings.from_config(section)


def splits_check(section: dict) -> None:
    from workflow_scripts.learning.splits import SplitSettings

    SplitSettings.from_config(section)


def labels_check(section: dict) -> None:
    from workflow_scripts.learning.labels import LabelSettings

    LabelSettings.from_config(section)


def demo_check(section: dict) -> None:
    from workflow_scripts.demo.config import DemoConfig

    DemoConfig.from_mapping(section)


def heterogeneity_check(section: dict) -> None:
    from workflow_scripts.analysis.heterogeneity import hta_test

    flags = np.zeros((4, 4, 2), dtype=np.int8)
    flags[:2, :, 0] = 1
    hta_test(flags, region_size=2, permutations=section["permutations"], seed=0, log_base=section["hta_log_base"])


def maps_check(section: dict) -> None:
    from workflow_scripts.analysis.maps import overlay_alpha

    overlay_alpha(section)


def viewer_check(section: dict) -> None:
    from workflow_scripts.analysis.viewer import ViewerSettings

    ViewerSettings.from_config(section)


def survival_check(section: dict) -> None:
    from workflow_scripts.analysis.survival import SurvivalSettings, censor_at

    settings = SurvivalSettings.from_config(section)
    if settings.max_months is not None:
        censor_at(pd.DataFrame({"os_months": [1.0, 2e6], "os_event": [1, 1]}), settings.max_months)


def head_check(section: dict) -> None:
    from workflow_scripts.learning.heads import HeadSettings

    HeadSettings.from_config(section)


def encoder_check(section: dict) -> None:
    from workflow_scripts.features.encoder import EncoderSettings

    values = {key: value for key, value in section.items() if key != "slides_per_job"}  # the rule's grouping
    EncoderSettings.from_config(values | {"name": "keras.applications:ResNet50"})  # name has no default


def import_check(section: dict) -> None:
    from workflow_scripts.features.importing import ImportSettings

    ImportSettings.from_config(section | {"folder": "features"})  # folder has no default


def planted_check(section: dict) -> None:
    from workflow_scripts.demo.planted_features import PlantedFeatures

    PlantedFeatures.from_config(section)


CHECKS: dict[str, Callable[[dict], None]] = {
    "features.head": head_check,
    "features.encoder": encoder_check,
    "features.import": import_check,
    "features.import.planted": planted_check,
    "tiling": tiling_check,
    "training": training_check,
    "splits": splits_check,
    "labels": labels_check,
    "demo": demo_check,
    "heterogeneity": heterogeneity_check,
    "maps": maps_check,
    "viewer": viewer_check,
    "survival": survival_check,
}

BOUNDS = [
    # (section, key, values at the edge, values just outside)
    ("tiling", "max_background", [0, 0.999], [-0.001, 1]),
    ("tiling", "tile_px", [16], [15]),
    ("tiling", "target_mpp", [1e-6], [0]),
    ("tiling", "jpeg_quality", [1, 100], [0, 101]),
    ("training", "input_px", [75], [74]),
    ("training", "learning_rate", [1e-9], [0]),
    ("training", "lr_factor", [1e-6, 0.999], [0, 1]),
    *[("training", key, [1], [0]) for key in ("batch_size", "evals_per_epoch", "lr_patience", "stop_patience",
                                                "max_evals", "workers", "predict_batch_size")],
    ("splits", "test_fraction", [0.001, 0.8], [0, 1]),
    ("splits", "n_splits", [1], [0]),
    ("labels", "low_percentile", [0, 50], [-0.1, 50.1]),
    ("labels", "high_percentile", [50.1, 100], [49.9, 100.1]),
    ("labels", "near_width", [0], [-0.1]),
    ("demo", "n_patients", [6], [5]),
    ("demo", "cell_px", [16, 20], [12, 18]),
    ("demo", "tissue_fraction", [0.001, 1], [0, 1.001]),
    ("demo", "min_tissue_fraction", [0.001, 1], [0, 1.001]),
    ("demo", "homogeneous_fraction", [0, 1], [-0.1, 1.1]),
    ("demo", "signal", [0, 1], [-0.1, 1.1]),
    ("demo", "dx2_fraction", [0, 1], [-0.1, 1.1]),
    ("demo", "expression_noise", [0], [-0.1]),
    ("demo", "jpeg_quality", [1, 100], [0, 101]),
    ("demo", "tss", ["A1"], ["a1", "ABC"]),
    ("heterogeneity", "permutations", [1], [0]),
    ("heterogeneity", "hta_log_base", ["combinations", "observed"], ["base_2", 2]),
    ("maps", "alpha", [0, 1], [-0.01, 1.01]),
    ("viewer", "max_px", [64, 16384], [63, 16385]),
    ("viewer", "jpeg_quality", [1, 100], [0, 101]),
]


def base_config() -> dict:
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    validate(config, schema=str(SCHEMA_PATH))  # fills in the defaults the settings classes see in a run
    return config


@pytest.mark.parametrize(("section", "key", "inside", "outside"), BOUNDS, ids=[f"{s}.{k}" for s, k, *_ in BOUNDS])
def test_schema_and_code_agree_on_the_bound(section: str, key: str, inside: list, outside: list) -> None:
    base = base_config()
    for value in inside:
        config = deep_update(copy.deepcopy(base), {section: {key: value}})
        validate(config, schema=str(SCHEMA_PATH))
        CHECKS[section](config[section])
    for value in outside:
        config = deep_update(copy.deepcopy(base), {section: {key: value}})
        with pytest.raises(WorkflowError, match=key):
            validate(config, schema=str(SCHEMA_PATH))


def schema_bounds() -> list[tuple[str, str, str, float, str]]:
    """Every numeric bound on a scalar key of the schema: (dotted key, section, key, bound value, bound kind)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    found = []

    def walk(node: dict, path: str) -> None:
        for kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            section, _, key = path.rpartition(".")
            if kind in node and (path.count(".") == 1 or section in CHECKS):
                found.append((path, section, key, node[kind], kind, node.get("type", "number")))
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}" if path else key)

    walk(schema, "")
    return found


def nested(section: str, values: dict) -> dict:
    """`values` at a dotted section path: nested("a.b", v) = {"a": {"b": v}}."""
    for part in reversed(section.split(".")):
        values = {part: values}
    return values


def at(config: dict, section: str) -> dict:
    """The mapping at a dotted section path of a validated config."""
    for part in section.split("."):
        config = config[part]
    return config


def edge_values(bound: float, kind: str, kind_of_number: str) -> tuple[float, float]:
    """(a value the bound allows, the nearest value it forbids)."""
    step = 1 if kind_of_number == "integer" else 1e-6 * max(1.0, abs(bound))
    if kind == "minimum":
        return bound, bound - step
    if kind == "maximum":
        return bound, bound + step
    if kind == "exclusiveMinimum":
        return bound + step, bound
    return bound - step, bound


SCHEMA_BOUNDS = schema_bounds()
# Keys whose schema edge is valid alone but breaks a limit on a sum of keys, which the code checks before any job.
CROSS_KEY_LIMITS = {
    ("splits.test_fraction", "exclusiveMaximum"): r"test_fraction \+ val_fraction must be < 1",
    ("splits.val_fraction", "exclusiveMaximum"): r"test_fraction \+ val_fraction must be < 1",
}


@pytest.mark.parametrize("bound", SCHEMA_BOUNDS, ids=[f"{path}:{kind}" for path, _, _, _, kind, _ in SCHEMA_BOUNDS])
def test_every_schema_bound_holds_at_its_edge_in_the_schema_and_the_code(bound: tuple) -> None:
    """Each bound of schema.yaml, tried at its edge: allowed by the schema and by the code reading it, the next
    value forbidden by the schema, so no value the schema accepts crashes a job."""
    path, section, key, value, kind, kind_of_number = bound
    allowed, forbidden = edge_values(value, kind, kind_of_number)
    if kind_of_number == "integer":
        allowed, forbidden = int(allowed), int(forbidden)
    base = base_config()
    if section not in base and "." not in section:
        pytest.skip(f"{section} is not in the demo config")
    config = deep_update(copy.deepcopy(base), nested(section, {key: allowed}))
    validate(config, schema=str(SCHEMA_PATH))
    if section in CHECKS and (path, kind) in CROSS_KEY_LIMITS:
        # the schema cannot say "test_fraction + val_fraction < 1": the parse-time check (SplitSettings in
        # rules/common.smk) stops such a config before any job, naming both keys
        with pytest.raises(ValueError, match=CROSS_KEY_LIMITS[path, kind]):
            CHECKS[section](config[section])
    elif section in CHECKS:
        CHECKS[section](at(config, section))
    config = deep_update(copy.deepcopy(base), nested(section, {key: forbidden}))
    with pytest.raises(WorkflowError, match=key):
        validate(config, schema=str(SCHEMA_PATH))


def test_the_bound_walk_sees_the_schema() -> None:
    assert len(SCHEMA_BOUNDS) > 50 and ("tiling.max_background", "tiling", "max_background", 1,
                                         "exclusiveMaximum", "number") in SCHEMA_BOUNDS


# --- README: every `snakemake ... --config` example validates


def readme_config_examples() -> list[str]:
    """The `--config` arguments of every snakemake command line in README.md (code spans and code blocks)."""
    readme = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"`([^`\n]*snakemake[^`\n]*)`", readme)
    commands += [line for line in readme.splitlines() if re.match(r"\s*(\S*/)?snakemake\s", line)]
    examples = []
    for command in commands:
        words = shlex.split(command, comments=True)
        if "--config" in words:
            examples.append(words[words.index("--config") + 1 :])
    return examples


def test_readme_has_no_nested_config_command() -> None:
    for arguments in readme_config_examples():
        for argument in arguments:
            if argument.startswith("-"):
                break
            assert "{" not in argument and "[" not in argument, f"nested --config value in README: {argument}"


def test_readme_config_examples_validate(tmp_path: Path) -> None:
    examples = readme_config_examples()
    assert examples, "README.md shows no snakemake --config example"
    for index, arguments in enumerate(examples):
        values = []
        for argument in arguments:
            if argument.startswith("-"):
                break
            values.append(argument)
        returncode, output, _ = dry_run_output(tmp_path / str(index), {}, "--config", *values)
        assert returncode == 0 and "config key" not in output, output[-2000:]
