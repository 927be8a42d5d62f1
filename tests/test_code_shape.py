"""The package keeps its shape: small modules, short narrow functions, each format read and written by its owner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow_scripts"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
SIZE_REASON = "Size:"  # a docstring line starting with this states why a function may be longer or wider

# The only package modules that may open HDF5 files or parse delimited text, and the format each owns.
FORMAT_OWNERS = {
    r"\bh5py\.File\(": {
        "slides/tilestore.py": "tile stores, tiles/{slide_id}.h5",
        "learning/predictions.py": "predictions/{trait}/{slide_id}.h5",
        "learning/checkpoint.py": "training checkpoints (weights and optimizer arrays)",
        "analysis/cartography.py": "cartography/{slide_id}.h5",
        "demo/truth.py": "the synthetic cohort's planted truth",
        "features/featurestore.py": "feature stores, features/{slide_id}.h5",
        "features/trident_files.py": "TRIDENT, CLAM and STAMP feature and patch-coordinate files (foreign formats)",
    },
    r"\bpd\.read_(csv|table)\(": {
        "common/tables.py": "every TSV this workflow writes",
        "inputs/expression.py": "user and PanCanAtlas expression matrices (inputs, not ours)",
        "inputs/clinical.py": "TCGA-CDR and cBioPortal clinical tables (inputs, not ours)",
        "inputs/slidetable.py": "a user's local slide table (input)",
        "inputs/gdc_manifest.py": "GDC manifests (input)",
    },
}
# The features modules that must not need Keras (the encoder and its embedding do)
FEATURES_WITHOUT_KERAS = ("featurestore", "summary", "trident_files", "matching", "importing", "trident_export")
# Tests that build malformed or foreign files on purpose, or serve them as a stand-in GDC.
TEST_FIXTURES = {"gdc_server.py", "qc_rows.py", "test_code_shape.py"}
# A test line may read a file itself when it says why: an independent check of a reader, or a file broken on purpose.
FIXTURE_MARK = re.compile(r"#.*(independent check|on purpose)")


def package_modules() -> list[Path]:
    """Every Python module of the package."""
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", package_modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{path.relative_to(REPO)} has {lines} lines (max {MAX_MODULE_LINES}): split it by job"
    )


def oversized_functions(path: Path) -> list[str]:
    """Functions over the length or parameter limit whose docstring gives no reason."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        arguments = node.args
        names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
        n_parameters = len([name for name in names if name not in ("self", "cls")])
        n_lines = node.end_lineno - node.lineno + 1
        docstring = ast.get_docstring(node) or ""
        explained = any(line.strip().startswith(SIZE_REASON) for line in docstring.splitlines())
        if (n_lines > MAX_FUNCTION_LINES or n_parameters > MAX_PARAMETERS) and not explained:
            found.append(
                f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n_lines} lines, {n_parameters} parameters"
            )
    return found


def test_functions_are_short_and_narrow_or_say_why() -> None:
    found = [entry for path in package_modules() for entry in oversized_functions(path)]
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines or {MAX_PARAMETERS} parameters without a '{SIZE_REASON}' line "
        "in their docstring:\n" + "\n".join(found)
    )


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(REPO)) for path in package_modules() if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not missing, f"modules without a docstring saying what they own: {missing}"


def test_formats_are_read_and_written_only_by_their_owners() -> None:
    sources = [*package_modules(), *sorted((REPO / "rules").glob("*.smk")), REPO / "Snakefile"]
    sources += [path for path in sorted((REPO / "tests").rglob("*.py")) if path.name not in TEST_FIXTURES]
    offenders = []
    for path in sources:
        relative = str(path.relative_to(PACKAGE)) if path.is_relative_to(PACKAGE) else None
        for call, owners in FORMAT_OWNERS.items():
            if relative in owners:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if re.search(call, line) and not line.lstrip().startswith("#") and not FIXTURE_MARK.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "format read or written outside its owner module:\n" + "\n".join(offenders)


def test_owner_modules_exist_and_state_their_contract() -> None:
    for owners in FORMAT_OWNERS.values():
        for relative, what in owners.items():
            path = PACKAGE / relative
            assert path.exists(), f"format owner {relative} ({what}) is missing"
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert len(docstring) > 200, f"{relative}: the docstring must state the contract of {what}"
    for relative in ("slides/qc_table.py", "learning/labels.py", "learning/splits.py", "analysis/ensemble.py"):
        docstring = ast.get_docstring(ast.parse((PACKAGE / relative).read_text())) or ""
        assert re.search(r"column|Contract", docstring), f"{relative}: the docstring must state its table's columns"


def test_analysis_and_input_stages_import_no_deep_learning_framework() -> None:
    """envs/analysis.yaml and envs/inputs.yaml carry no Keras: those stages' modules must not pull it in."""
    assert {path.stem for path in (PACKAGE / "features").glob("*.py")} - set(FEATURES_WITHOUT_KERAS) == {
        "__init__", "encoder", "embed"
    }
    import subprocess
    import sys

    modules = sorted(
        "workflow_scripts." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for folder in ("analysis", "inputs", "slides", "common")
        for path in (PACKAGE / folder).glob("*.py")
        if path.name != "__init__.py"
    )
    # stage embed's import source and the features tables run in envs/analysis.yaml too
    modules += [f"workflow_scripts.features.{name}" for name in FEATURES_WITHOUT_KERAS]
    modules += ["workflow_scripts.demo.planted_features"]
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]", result.stdout
