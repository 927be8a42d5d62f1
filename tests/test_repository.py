"""Repository hygiene: lint, pins shared by pyproject.toml and envs/, licence, citation, config documentation."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

from workflow_runner import REPO_ROOT, make_workdir, scheduled_rules, snakemake

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
EXAMPLE_CONFIG = REPO_ROOT / "config" / "example_own_cohort.yaml"
PAPER_DOI = "10.1038/s41598-020-75708-z"

# Conda packages whose PyPI distribution has another name (conda-forge name -> PyPI name).
CONDA_TO_PYPI = {"pytables": "tables", "pytorch": "torch", "matplotlib-base": "matplotlib"}
# Env entries that are not PyPI dependencies of the project, so pyproject.toml cannot pin them:
ENV_ONLY = {
    "python",  # the interpreter; its pin is checked against `requires-python` instead
    "pip",  # installs the `pip:` section of each env; any version does
}


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -, _ and . as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(text: str) -> tuple[str, str, str]:
    """(normalised name, operator, version) of `name==1.2`, `name[extra]==1.2`, `name=1.2` or `name`."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:(==|=|>=|<=|~=|!=|>|<)\s*(\S+))?\s*",
                         text)
    assert match, f"cannot parse requirement {text!r}"
    name, operator, version = match.groups()
    return normalise(name), operator or "", version or ""


def pyproject_pins() -> dict[str, str]:
    """Exact pins of pyproject.toml's dependencies and optional dependencies, by normalised name."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for requirement in requirements:
        name, operator, version = split_requirement(requirement)
        assert operator == "==", f"pyproject.toml: {requirement!r} is not an exact pin"
        pins[name] = version
    return pins


def env_entries() -> list[tuple[str, str, str, str, str]]:
    """(env file, section, normalised name, operator, version) of every entry of envs/*.yaml."""
    entries = []
    for path in sorted((REPO_ROOT / "envs").glob("*.yaml")):
        for item in yaml.safe_load(path.read_text())["dependencies"]:
            if isinstance(item, dict):
                for requirement in item.get("pip", []):
                    entries.append((path.name, "pip", *split_requirement(requirement)))
            else:
                name, operator, version = split_requirement(item)
                entries.append((path.name, "conda", CONDA_TO_PYPI.get(name, name), operator, version))
    assert entries, "no envs/*.yaml found"
    return entries


def test_ruff_check_is_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    assert ruff.exists(), f"{ruff} is missing: install the test extras (pip install -e '.[test]')"
    pinned = pyproject_pins()["ruff"]
    version = subprocess.run([ruff, "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert version == pinned, f"ruff {version} is installed, pyproject.toml pins {pinned}"
    process = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=REPO_ROOT, capture_output=True,
                             text=True)
    assert process.returncode == 0, f"ruff check . failed:\n{process.stdout}{process.stderr}"


def test_env_pins_match_pyproject() -> None:
    pins = pyproject_pins()
    requires_python = SpecifierSet(PYPROJECT["project"]["requires-python"])
    problems = []
    for env, section, name, operator, version in env_entries():
        where = f"envs/{env} ({section}): {name}{operator}{version}"
        if name == "python":
            if not version or operator not in ("=", "=="):
                problems.append(f"{where}: pin the interpreter (python=3.x)")
            elif version.rstrip(".*") + ".0" not in requires_python:
                problems.append(f"{where}: outside requires-python {requires_python}")
        elif name in ENV_ONLY:
            continue
        elif name not in pins:
            problems.append(f"{where}: not a dependency in pyproject.toml")
        elif operator not in ("==", "=") or version != pins[name]:
            problems.append(f"{where}: pyproject.toml pins {name}=={pins[name]}")
    assert not problems, "env pins disagree with pyproject.toml:\n" + "\n".join(problems)


def test_license_file_matches_pyproject() -> None:
    license_field = PYPROJECT["project"]["license"]
    spdx = license_field if isinstance(license_field, str) else license_field["text"]
    first_line = (REPO_ROOT / "LICENSE").read_text().splitlines()[0].strip()
    assert first_line == {"MIT": "MIT License"}.get(spdx, spdx), (spdx, first_line)


def test_citation_cites_the_workflow_and_the_paper() -> None:
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["title"].strip()
    assert str(citation["version"]) == PYPROJECT["project"]["version"]
    assert citation["license"] == PYPROJECT["project"]["license"]
    cited = list(citation.get("references", []))
    if "preferred-citation" in citation:
        cited.append(citation["preferred-citation"])
    assert PAPER_DOI in {str(reference.get("doi", "")).lower() for reference in cited}


def schema_keys(node: dict, schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every key the schema defines: properties and required names of objects, recursively,
    through $ref, oneOf/anyOf/allOf alternatives and the items of arrays (a list's item keys hang off the
    list's own path, e.g. `traits.name`)."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    keys = []
    for alternative in node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", []):
        keys += schema_keys(alternative, schema, prefix)
    properties = node.get("properties", {})
    for name in list(properties) + [name for name in node.get("required", []) if name not in properties]:
        path = f"{prefix}.{name}" if prefix else name
        keys.append(path)
        keys += schema_keys(properties.get(name, {}), schema, path)
    if isinstance(node.get("items"), dict):
        keys += schema_keys(node["items"], schema, prefix)
    return list(dict.fromkeys(keys))


def test_config_readme_documents_every_schema_key() -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    keys = schema_keys(schema, schema)
    assert "survival.thresholds.low_max" in keys and "expression.mrna.gdc_file_id" in keys  # the walk goes deep
    readme = (REPO_ROOT / "config" / "README.md").read_text()
    missing = [key for key in keys if f"`{key}`" not in readme]
    assert not missing, "config/README.md does not document: " + ", ".join(missing)
    assert "example_own_cohort.yaml" in readme


def load_example() -> dict:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def test_example_own_cohort_config_is_valid() -> None:
    from snakemake.utils import validate

    config = load_example()
    validate(config, schema=str(SCHEMA_PATH))
    assert config["slides"]["source"] == "local" and config["slides"]["local"]["table"]
    # The checks rules/common.smk adds to the schema: unique trait names, an expression matrix per trait source.
    names = [trait["name"] for trait in config["traits"]]
    assert len(set(names)) == len(names)
    assert {trait["source"] for trait in config["traits"]} <= set(config["expression"])
    assert not any(trait["id"].upper().startswith("TCGA-") for trait in config["traits"])


def test_example_own_cohort_config_dry_run_plans_the_slide_table(tmp_path: Path) -> None:
    # A dry run stops at the slide-table checkpoint, so it only needs the input files to exist: the slide table
    # (header only), the expression matrices and the clinical table, laid out in a scratch copy of the workflow.
    workdir = make_workdir(tmp_path / "run", base=EXAMPLE_CONFIG.name)
    config = load_example()
    inputs = {config["slides"]["local"]["table"]: "slide_id\tpatient_id\tpath\n",
              config["clinical"]["path"]: "PATIENT_ID\tOS_STATUS\tOS_MONTHS\n"}
    inputs |= {path: "gene_id\n" for path in config["expression"].values()}
    for relative, text in inputs.items():
        assert not Path(relative).is_absolute(), relative
        (workdir / relative).parent.mkdir(parents=True, exist_ok=True)
        (workdir / relative).write_text(text)
    process = snakemake(workdir, "-n", "--cores", "1")
    jobs = scheduled_rules(process.stdout)
    assert jobs.get("slide_table") == 1 and jobs.get("clinical") == 1, process.stdout[-3000:]
    assert jobs.get("train") == len(config["traits"]) * config["splits"]["n_splits"], jobs
    assert "demo_cohort" not in jobs and "gdc_manifest" not in jobs and "fetch_input" not in jobs, jobs
