"""Run Snakemake through the Slurm profile and read back what was submitted and what jobs saw."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"
TEST_PROFILE = REPO_ROOT / "tests" / "slurm" / "profile"
TINY_SNAKEFILE = REPO_ROOT / "tests" / "slurm" / "Snakefile"


def slurm_profile_args(*extra_profiles: Path) -> list[str]:
    """Profile arguments: the shipped Slurm profile, then the test override (later ones win)."""
    profiles = [SLURM_PROFILE, TEST_PROFILE, *extra_profiles]
    args = [arg for profile in profiles for arg in ("--profile", str(profile))]
    # With three --profile layers plus the workflow profile (profiles/default), Snakemake 9.27 kept the shipped
    # group-components (4 slides per job, too big for the 2-CPU test node) instead of the later layers' value;
    # the test therefore layers its profiles without the workflow profile (the slurm profile repeats its settings).
    return [*args, "--workflow-profile", "none"]


def job_environment() -> dict[str, str]:
    """Environment for Snakemake and, through `sbatch --export=ALL`, for every Slurm job."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "SBATCH_", "SRUN_", "CUDA_VISIBLE_DEVICES"))
    }
    env["PATH"] = f"{Path(SNAKEMAKE).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_snakemake(workdir: Path, args: list[str], log_path: Path, timeout_s: float) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir` with its output in `log_path`; a hang fails after `timeout_s`."""
    command = [SNAKEMAKE, "--directory", str(workdir), "--verbose", *args]
    with open(log_path, "w") as log:
        try:
            return subprocess.run(
                command,
                cwd=workdir,
                env=job_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise AssertionError(
                f"{shlex.join(command)} still running after {timeout_s:.0f} s\n{tail(log_path)}"
            ) from error


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file, for assertion messages."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else ["<missing>"]
    return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text[-lines:])


def failure_report(snakemake_log: Path, workdir: Path, lines: int = 80) -> str:
    """What failed: Snakemake's "Error in rule/group" blocks, then the Slurm and rule logs they name."""
    text = (snakemake_log.read_text(errors="replace") if snakemake_log.exists() else "").splitlines()
    starts = [i for i, line in enumerate(text) if re.search(r"Error in (rule|group) ", line)][:4]
    blocks = ["\n".join(text[i : i + 25]) for i in starts]
    named = [
        name.strip()
        for line in "\n".join(blocks).splitlines()
        if re.match(r"\s*log: ", line)
        for name in line.split("log: ", 1)[1].split(" (")[0].split(",")
        if name.strip()
    ]
    sections = ["\n".join(blocks) or "<no 'Error in rule' block>"]
    for name in dict.fromkeys(named):
        path = Path(name) if Path(name).is_absolute() else workdir / name
        sections.append(tail(path, lines))
    return "\n".join(sections) + "\n" + tail(snakemake_log)


def sbatch_calls(snakemake_log: str) -> list[str]:
    """The sbatch command lines the executor ran, as it logs them with --verbose."""
    return [match.group(1) for match in re.finditer(r"^sbatch call: (sbatch .*)$", snakemake_log, flags=re.MULTILINE)]


def sbatch_call_for(snakemake_log: str, comment_prefix: str) -> list[str]:
    """sbatch calls whose job comment (``rule_<name>...`` or ``rule_<group>_...``) starts with the prefix."""
    return [call for call in sbatch_calls(snakemake_log) if f"--comment {comment_prefix}" in call]


def scontrol_fields(text: str) -> dict[str, str]:
    """Key=value pairs of `scontrol show job` output (values never contain spaces we need)."""
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", text))


def visible_devices(text: str) -> str | None:
    """The CUDA_VISIBLE_DEVICES a job recorded with `env | grep`, or None if it was unset."""
    match = re.search(r"^CUDA_VISIBLE_DEVICES=(.*)$", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def gpu_request(fields: dict[str, str]) -> str:
    """The GPU request Slurm recorded for a job (gpus-per-job or gres-per-node), empty if none."""
    return fields.get("TresPerJob", "") + fields.get("TresPerNode", "")
