"""A private single-node Slurm the tests start themselves: munged, slurmctld and slurmd on
this machine, with GPUs simulated by character devices.

Nothing in ``/etc`` is read or touched, so a site's own Slurm or munge is never disturbed:
munged gets a key and a socket of its own (``AuthInfo=socket=...``), and ``slurm.conf`` and
``gres.conf`` live in a temporary folder with their own ports, ``ClusterName``, state, spool,
pid and log paths. The clients (``sbatch``, ``squeue``, ``scancel``) find it through
``SLURM_CONF`` (:meth:`SlurmCluster.env`). The GPUs are ``mknod`` character devices with
/dev/null's numbers: Slurm refuses plain files, and with ``Flags=nvidia_gpu_env`` it sets
``CUDA_VISIBLE_DEVICES`` for each job as on a real GPU node. It needs root (slurmd starts
jobs as their user; munged runs as the ``munge`` user) and Debian's ``slurm-wlm`` and
``munge`` (``make install`` installs them as root); :func:`slurm_missing` says why it cannot
start, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, is_root

PROGRAMS = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
"""What the private Slurm needs on the PATH (Debian: ``slurm-wlm`` and ``munge``)."""
MUNGE_USER = "munge"
NODE_MEMORY_MB = 20000
"""Memory the node declares; each job gets ``DefMemPerCPU`` unless it asks for more."""
START_TIMEOUT = 60.0


def _program(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file()), None
    )


def slurm_missing() -> str | None:
    """Why a private Slurm cannot start here (for a skip), or None when it can."""
    if not is_root():
        return "a private Slurm needs root (slurmd starts jobs as their user)"
    missing = [name for name in PROGRAMS if _program(name) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed (Debian: apt-get install slurm-wlm munge; "
            "make install does it as root)"
        )
    try:
        pwd.getpwnam(MUNGE_USER)
    except KeyError:
        return f"no {MUNGE_USER!r} user (Debian's munge package makes it)"
    return None


@dataclass
class SlurmCluster:
    """A running private Slurm: one node of ``gpus`` simulated GPUs."""

    folder: Path
    conf: Path
    name: str
    node: str
    gpus: int

    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` naming this cluster's config."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (``squeue``, ``scancel``, ...) against this cluster."""
        return subprocess.run(
            list(command), env=self.env(), capture_output=True, text=True, timeout=60, check=check
        )

    def log(self) -> str:
        """The tails of the daemons' logs (for a failed assertion's message)."""
        tails = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.folder / name
            if path.exists():
                tails.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(tails)


def _munge(folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start munged as the munge user with a key, socket and files of its own."""
    home = folder / "munge"  # the key, seed, pid and log: munge's alone (mode 700)
    run = folder / "munge-run"  # the socket: munged wants others to reach it (mode 755)
    for path, mode in ((home, 0o700), (run, 0o755)):
        path.mkdir()
        shutil.chown(path, MUNGE_USER, MUNGE_USER)
        path.chmod(mode)
    key = home / "munge.key"
    key.write_bytes(os.urandom(1024))
    shutil.chown(key, MUNGE_USER, MUNGE_USER)
    key.chmod(0o400)
    sock = run / "munge.socket"
    process = subprocess.Popen(
        [
            "runuser",
            "-u",
            MUNGE_USER,
            "--",
            str(_program("munged")),
            "--foreground",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={home / 'munged.pid'}",
            f"--log-file={home / 'munged.log'}",
            f"--seed-file={home / 'munged.seed'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        cred = subprocess.run(
            [str(_program("munge")), f"--socket={sock}", "-n"], capture_output=True, timeout=30
        )
        if cred.returncode == 0:
            back = subprocess.run(
                [str(_program("unmunge")), f"--socket={sock}"],
                input=cred.stdout,
                capture_output=True,
                timeout=30,
            )
            if back.returncode == 0:
                return process, sock
        if process.poll() is not None or time.monotonic() > deadline:
            log = home / "munged.log"
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"munged did not start: {cred.stderr!r} {text}")
        time.sleep(0.2)


def _write_config(folder: Path, sock: Path, node: str, gpus: int) -> tuple[Path, str]:
    """slurm.conf and gres.conf of a one-node cluster with ``gpus`` simulated GPUs."""
    devices = folder / "dev"
    devices.mkdir()
    for i in range(gpus):
        os.mknod(devices / f"nvidia{i}", 0o666 | 0o020000, os.makedev(1, 3))  # as /dev/null
    name = f"hpotest{uuid.uuid4().hex[:8]}"
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    controller, daemon = free_port(), free_port()
    cpus = os.cpu_count() or 1
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                f"ClusterName={name}",
                f"SlurmctldHost={node}(127.0.0.1)",
                f"SlurmctldPort={controller}",
                f"SlurmdPort={daemon}",
                "AuthType=auth/munge",
                # cred_expire: also how long a re-queued job waits before it may start again
                f"AuthInfo=socket={sock},cred_expire=10",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "DefMemPerCPU=2000",
                "GresTypes=gpu",
                "SchedulerParameters=sched_interval=2",
                "KillWait=30",
                "MailProg=/bin/true",
                f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={NODE_MEMORY_MB} "
                f"Gres=gpu:{gpus} State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP "
                "OverSubscribe=FORCE:4",
                "",
            ]
        )
    )
    last = f"[0-{gpus - 1}]" if gpus > 1 else "0"
    (folder / "gres.conf").write_text(
        "AutoDetect=off\n"
        f"NodeName={node} Name=gpu File={devices}/nvidia{last} Flags=nvidia_gpu_env\n"
    )
    return conf, name


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def slurm_cluster(gpus: int = 4) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd (in the foreground, as our children) for a one-node
    cluster of ``gpus`` simulated GPUs; cancel its jobs and stop all three at the end.

    Raises:
        FileNotFoundError: Not root, or a program is missing (:func:`slurm_missing`).
        RuntimeError: A daemon did not start, or the node was not idle within a minute (the
            daemons' logs are in the message).
    """
    reason = slurm_missing()
    if reason is not None:
        raise FileNotFoundError(reason)
    folder = Path(tempfile.mkdtemp(prefix="hpo-slurm-"))
    folder.chmod(0o755)  # munged (the munge user) reaches its folders inside
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        munged, sock = _munge(folder)
        daemons.append(munged)
        node = socket.gethostname()
        conf, name = _write_config(folder, sock, node, gpus)
        cluster = SlurmCluster(folder, conf, name, node, gpus)
        for program, ready in (("slurmctld", _answers), ("slurmd", _node_idle)):
            daemons.append(
                subprocess.Popen(
                    [str(_program(program)), "-D", "-f", str(conf)],
                    env=cluster.env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
            if not _wait_for(cluster, daemons, ready):
                raise RuntimeError(f"{program} did not start: {cluster.log()}")
        try:
            yield cluster
        finally:
            cluster.run(
                "scancel", "--full", "--user", pwd.getpwuid(os.getuid()).pw_name, check=False
            )
            _wait_for(cluster, daemons, _no_jobs)
    finally:
        for process in reversed(daemons):
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _answers(cluster: SlurmCluster) -> bool:
    return cluster.run("sinfo", check=False).returncode == 0


def _node_idle(cluster: SlurmCluster) -> bool:
    out = cluster.run("sinfo", "-h", "-o", "%G %T", check=False).stdout.strip()
    return out.startswith(f"gpu:{cluster.gpus}") and out.endswith("idle")


def _no_jobs(cluster: SlurmCluster) -> bool:
    return not cluster.run("squeue", "-h", check=False).stdout.strip()


def _wait_for(
    cluster: SlurmCluster,
    daemons: list[subprocess.Popen[bytes]],
    ready: Callable[[SlurmCluster], bool],
) -> bool:
    """Wait until ``ready(cluster)``; False when a daemon died or a minute passed."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready(cluster):
        if any(p.poll() is not None for p in daemons) or time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True
