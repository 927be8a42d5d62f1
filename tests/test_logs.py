"""Job logs: the one logger helper, and the exception hook that writes an uncaught error into the job's log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workflow_scripts.common import logs
from workflow_scripts.common.logs import get_logger

FAILING_SCRIPT = """
from workflow_scripts.common.logs import get_logger

log = get_logger("failing_job", snakemake.log[0])
log.info("starting")
raise ValueError("slide X: broken")
"""

SNAKEFILE = """
rule all:
    input: "out.txt"
rule failing:
    output: "out.txt"
    log: "logs/cohort/failing.log"
    script: "failing.py"
"""


@pytest.fixture
def fresh_hook(monkeypatch):
    """An empty list of job logs and a recording hook in place of the interpreter's, restored after the test."""
    seen = []
    monkeypatch.setattr(logs, "_EXCEPTION_LOGS", {})
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args))
    return seen


def _raise_and_catch(error: BaseException):
    """The (type, value, traceback) triple of a raised exception, as sys.excepthook receives it."""
    try:
        raise error
    except BaseException:
        return sys.exc_info()


def test_hook_writes_traceback_to_log_and_chains(tmp_path, fresh_hook):
    log_path = tmp_path / "logs" / "job.log"
    log = get_logger("test_logs_job", log_path)
    log.info("last info line")
    exc_info = _raise_and_catch(ValueError("slide X: broken"))
    sys.excepthook(*exc_info)
    text = log_path.read_text()
    assert text.index("last info line") < text.index("ERROR test_logs_job: uncaught ValueError")
    assert "Traceback (most recent call last)" in text and "ValueError: slide X: broken" in text
    assert fresh_hook == [exc_info]  # the previous hook still runs (stderr report, exit status)


def test_hook_installed_once_and_each_log_written_once(tmp_path, fresh_hook):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    get_logger("test_logs_a", first)
    hook = sys.excepthook
    get_logger("test_logs_a", first)
    get_logger("test_logs_b", second)
    get_logger("test_logs_plain")  # no log file: nothing registered
    assert sys.excepthook is hook
    sys.excepthook(*_raise_and_catch(KeyError("key 'cohort'")))
    assert first.read_text().count("Traceback") == 1 and second.read_text().count("Traceback") == 1
    assert "KeyError: \"key 'cohort'\"" in first.read_text()
    assert len(fresh_hook) == 1


def test_unwritable_log_still_reaches_previous_hook(tmp_path, fresh_hook):
    log_path = tmp_path / "job.log"
    get_logger("test_logs_gone", log_path)
    log_path.unlink()
    log_path.mkdir()  # the log path is now a folder: writing fails, the error must still be reported
    sys.excepthook(*_raise_and_catch(RuntimeError("boom")))
    assert len(fresh_hook) == 1


def test_failing_snakemake_job_log_holds_the_error(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_SCRIPT)
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [str(snakemake), "-c1", "--quiet", "-s", "Snakefile"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode != 0
    text = (tmp_path / "logs" / "cohort" / "failing.log").read_text()
    assert text.index("starting") < text.index("ERROR failing_job: uncaught ValueError, the job failed")
    assert "ValueError" in text and "slide X: broken" in text and "Traceback" in text, text
