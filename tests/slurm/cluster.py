"""A real single-node Slurm cluster on 127.0.0.1, started and stopped by the tests (needs root).

Test-rig details (not how a site runs Slurm):
- MUNGE runs with its own key, socket, pid and log files in a private run folder; slurm.conf
  points Slurm at that socket (``AuthInfo=socket=...``).
- slurm.conf and gres.conf are written to /etc/slurm: the Snakemake SLURM jobstep plugin removes
  SLURM_CONF from the job environment, so job steps only find the default path. Existing files
  there are moved aside and restored afterwards.
- No accounting daemon: ``sacct`` cannot answer, so runs use the executor plugin's own
  ``status_command: squeue``; ``MinJobAge`` keeps finished jobs visible to ``squeue``.
- One GPU is declared as GRES with ``File=/dev/null``; Slurm then binds it as device index 0
  and exports ``CUDA_VISIBLE_DEVICES=0`` to jobs and steps that asked for it.
- Only one cluster runs at a time on the machine (a lock file serialises concurrent test runs).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF_DIR = Path("/etc/slurm")
MANAGED_MARKER = "# written by tests/slurm/cluster.py"
BACKUP_SUFFIX = ".before-slurm-test"
LOCK_PATH = Path(tempfile.gettempdir()) / "snakemake-slurm-test.lock"
REQUIRED_PROGRAMS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


class SlurmRigError(RuntimeError):
    """The local test cluster could not be started or stopped cleanly."""


@dataclass(frozen=True)
class ClusterSettings:
    """Size and timing of the one-node test cluster (one GPU; defaults fit a 2-core CI machine)."""

    partition: str = "debug"
    cpus: int = 2
    real_memory_mb: int = 4096
    default_mem_per_cpu_mb: int = 256
    min_job_age_s: int = 600
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 30.0


@dataclass
class SlurmCluster:
    """Handle on a running test cluster: where its files are and how to reach it."""

    run_dir: Path
    settings: ClusterSettings
    node_name: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        """The partition jobs should be submitted to."""
        return self.settings.partition

    @property
    def log_paths(self) -> dict[str, Path]:
        """Daemon log files, for error messages when something goes wrong."""
        names = ("munged", "slurmctld", "slurmd")
        return {f"{name}{suffix}": self.run_dir / f"{name}{suffix}" for name in names for suffix in (".log", ".out")}

    def daemon_logs(self, tail_lines: int = 30) -> str:
        """The last lines of every daemon log, to attach to a failure message."""
        parts = []
        for name, path in self.log_paths.items():
            text = path.read_text(errors="replace").splitlines()[-tail_lines:] if path.exists() else ["<no log>"]
            parts.append(f"--- {name} ({path}) ---\n" + "\n".join(text))
        return "\n".join(parts)


def program_path(name: str) -> str | None:
    """Full path of a Slurm/MUNGE program; daemons live in /usr/sbin, often missing from PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search)


def missing_requirements() -> list[str]:
    """Why this machine cannot run the test cluster (empty when it can)."""
    reasons = [f"`{program}` not found" for program in REQUIRED_PROGRAMS if program_path(program) is None]
    if os.geteuid() != 0:
        reasons.append("not running as root (slurmd and MUNGE need root)")
    return reasons


def slurm_conf_text(settings: ClusterSettings, run_dir: Path, node_name: str, ports: tuple[int, int]) -> str:
    """slurm.conf for one node with CPUs, memory and GPUs of `settings`, state kept under `run_dir`."""
    controller_port, node_port = ports
    return f"""{MANAGED_MARKER}
ClusterName=snaketest
SlurmctldHost={node_name}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={run_dir / "munge.socket"}
CredType=cred/munge
StateSaveLocation={run_dir / "slurmctld-state"}
SlurmdSpoolDir={run_dir / "slurmd-spool"}
SlurmctldPidFile={run_dir / "slurmctld.pid"}
SlurmdPidFile={run_dir / "slurmd.pid"}
SlurmctldLogFile={run_dir / "slurmctld.log"}
SlurmdLogFile={run_dir / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# No cgroups inside a container: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default memory per CPU every job would claim the whole node and run alone.
DefMemPerCPU={settings.default_mem_per_cpu_mb}
# No accounting daemon (so no AccountingStorageTRES either: that needs slurmdbd).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# Finished jobs stay visible to `squeue` this long (the executor's status command).
MinJobAge={settings.min_job_age_s}
# Reject at sbatch time a job that asks for more than the node has, instead of leaving it pending.
EnforcePartLimits=ALL
ReturnToService=2
GresTypes=gpu
NodeName={node_name} NodeAddr=127.0.0.1 CPUs={settings.cpus} RealMemory={settings.real_memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={settings.partition} Nodes={node_name} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf_text(node_name: str) -> str:
    """gres.conf declaring the node's one GPU; a GRES gpu needs a device file, /dev/null stands in."""
    return f"{MANAGED_MARKER}\nNodeName={node_name} Name=gpu File=/dev/null\n"


def free_ports(count: int) -> tuple[int, ...]:
    """`count` TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def short_hostname() -> str:
    """This machine's short host name, which slurmd uses to find its NodeName line."""
    return socket.gethostname().split(".")[0]


@contextmanager
def exclusive_lock(path: Path = LOCK_PATH, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold a machine-wide lock, because two clusters would fight over /etc/slurm."""
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmRigError(f"another Slurm test cluster holds {path} for over {timeout_s:.0f} s")
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def installed_config(files: dict[Path, str]) -> Iterator[None]:
    """Write config files in place, moving any existing ones aside and restoring them after."""
    backups: dict[Path, Path] = {}
    written: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            if path.exists() and not _is_managed(path):
                if backup.exists():
                    raise SlurmRigError(f"both {path} and its backup {backup} exist; restore one by hand")
                path.rename(backup)
            if backup.exists():
                backups[path] = backup
            written.append(path)
            path.write_text(text)
        yield
    finally:
        for path in written:
            path.unlink(missing_ok=True)
            if path in backups:
                backups[path].rename(path)


def _is_managed(path: Path) -> bool:
    """Whether `path` was written by this module (a leftover from an interrupted run)."""
    with open(path, errors="replace") as handle:
        return handle.readline().strip() == MANAGED_MARKER


def processes_holding(run_dir: Path) -> dict[int, str]:
    """Processes with a file open under `run_dir`: the daemons and job steps of this cluster."""
    found: dict[int, str] = {}
    prefix = str(run_dir) + os.sep
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            if any(target.startswith(prefix) for target in targets):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _start_daemon(name: str, argv: list[str], run_dir: Path) -> subprocess.Popen:
    """Start a daemon in the foreground as our child, output to `<name>.out` in `run_dir`."""
    out = open(run_dir / f"{name}.out", "wb")
    try:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    finally:
        out.close()


def _run(argv: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """Run a Slurm client command and capture its text output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)


def _wait_for(predicate, timeout_s: float, what: str, cluster: SlurmCluster | None = None) -> None:
    """Poll `predicate` until true; fail naming `what` (and the daemon logs) on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if cluster is not None:
            for name, process in cluster.processes.items():
                if process.poll() is not None:
                    raise SlurmRigError(
                        f"{name} exited with {process.returncode} while waiting for {what}\n{cluster.daemon_logs()}"
                    )
        time.sleep(0.5)
    logs = cluster.daemon_logs() if cluster is not None else ""
    raise SlurmRigError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")


def node_state(node_name: str) -> str:
    """The node's state as `sinfo` reports it (e.g. idle, mixed, down*), empty if unreachable."""
    result = _run(["sinfo", "--noheader", "--nodes", node_name, "--format=%T"], timeout_s=10)
    return result.stdout.strip() if result.returncode == 0 else ""


def queued_job_ids() -> list[str]:
    """Jobs still pending, running or completing (finished ones are excluded)."""
    result = _run(["squeue", "--noheader", "--format=%i", "--states=PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED"])
    if result.returncode != 0:
        raise SlurmRigError(f"squeue failed: {result.stderr.strip()}")
    return result.stdout.split()


def _start(cluster: SlurmCluster) -> None:
    """Start munged, slurmctld and slurmd and wait until the node accepts jobs."""
    run_dir, timeout = cluster.run_dir, cluster.settings.start_timeout_s
    key = run_dir / "munge.key"
    subprocess.run([program_path("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    socket_path = run_dir / "munge.socket"
    cluster.processes["munged"] = _start_daemon(
        "munged",
        [
            program_path("munged"),
            "--foreground",
            f"--socket={socket_path}",
            f"--key-file={key}",
            f"--pid-file={run_dir / 'munged.pid'}",
            f"--log-file={run_dir / 'munged.log'}",
            f"--seed-file={run_dir / 'munged.seed'}",
        ],
        run_dir,
    )
    _wait_for(socket_path.exists, timeout, "the MUNGE socket", cluster)
    cluster.processes["slurmctld"] = _start_daemon("slurmctld", [program_path("slurmctld"), "-D", "-c"], run_dir)
    _wait_for(
        lambda: _run(["scontrol", "ping"], timeout_s=10).stdout.count("UP") > 0, timeout, "slurmctld to answer", cluster
    )
    cluster.processes["slurmd"] = _start_daemon(
        "slurmd", [program_path("slurmd"), "-D", "-N", cluster.node_name], run_dir
    )
    _wait_for(lambda: node_state(cluster.node_name) == "idle", timeout, f"node {cluster.node_name} to be idle", cluster)


def _stop(cluster: SlurmCluster) -> None:
    """Cancel every job, stop the daemons (slurmd first) and make sure nothing of ours is left running."""
    timeout = cluster.settings.stop_timeout_s
    if cluster.processes.get("slurmctld") and cluster.processes["slurmctld"].poll() is None:
        _run(["scancel", "--partition", cluster.partition])
        try:
            _wait_for(lambda: not queued_job_ids(), timeout, "cancelled jobs to leave the queue", cluster)
        except SlurmRigError:
            pass  # the leftover check below names whatever is still running
    for name in ("slurmd", "slurmctld", "munged"):
        process = cluster.processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    try:
        _wait_for(lambda: not processes_holding(cluster.run_dir), 10.0, "job steps to exit")
    except SlurmRigError:
        pass  # local_slurm reports the leftovers by process id


def leftover_processes(cluster: SlurmCluster) -> dict[int, str]:
    """Processes of this cluster still alive: daemons we started or steps holding its files."""
    alive = {process.pid: name for name, process in cluster.processes.items() if process.poll() is None}
    return {**alive, **processes_holding(cluster.run_dir)}


@contextmanager
def local_slurm(settings: ClusterSettings = ClusterSettings()) -> Iterator[SlurmCluster]:
    """Run a one-node Slurm cluster for the duration of the block; every daemon is stopped after."""
    missing = missing_requirements()
    if missing:
        raise SlurmRigError("cannot start the test cluster: " + "; ".join(missing))
    node_name = short_hostname()
    with exclusive_lock():
        run_dir = Path(tempfile.mkdtemp(prefix="slurm-test-"))
        try:
            run_dir.chmod(0o755)  # munged insists every directory above its socket is world-executable
            for folder in ("slurmctld-state", "slurmd-spool"):
                (run_dir / folder).mkdir()
            files = {
                SLURM_CONF_DIR / "slurm.conf": slurm_conf_text(settings, run_dir, node_name, free_ports(2)),
                SLURM_CONF_DIR / "gres.conf": gres_conf_text(node_name),
            }
            with installed_config(files):
                cluster = SlurmCluster(run_dir=run_dir, settings=settings, node_name=node_name)
                try:
                    _start(cluster)
                    yield cluster
                finally:
                    _stop(cluster)
                    left = leftover_processes(cluster)
                    if left:
                        raise SlurmRigError(f"processes of the test cluster still running: {left}")
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    with local_slurm() as running:
        print(_run(["sinfo"]).stdout)
        print(_run(["scontrol", "show", "node", running.node_name]).stdout)
