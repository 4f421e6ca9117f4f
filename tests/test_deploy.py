"""docker-compose.yml and the Dockerfile stay consistent with the CLI (no engine here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
import yaml

from hpo.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _hpo_commands(service: dict) -> list[list[str]]:
    """The hpo command lines a service runs (entrypoint hpo, or `sh -c` with hpo calls)."""
    command = service.get("command", [])
    if service.get("entrypoint") == ["sh", "-c"]:
        return [shlex.split(part.strip())[1:] for part in command[0].split("&&")]
    return [command]


def test_services_and_roles(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "pgbouncer", "s3", "setup", "dashboard", "worker", "evaluator"} <= set(
        services
    )
    assert services["postgres"]["healthcheck"]["test"]
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    for name in ("setup", "dashboard", "worker", "evaluator"):
        env = services[name]["environment"]
        assert env["HPO_STORAGE"].startswith("postgresql+psycopg://")
        assert "@pgbouncer:6432/" in env["HPO_STORAGE"]  # every process through the pooler
        assert env["HPO_ARTIFACTS"].startswith("s3://") and env["AWS_ENDPOINT_URL"]
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def _parse(argv: list[str]) -> click.Context:
    """Resolve the command and parse its options, as `hpo ARGV` would, without running it."""
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group):
        name, *args = args
        command = command.commands[name]  # KeyError: no such command
    return command.make_context(f"hpo {name}", args)  # click.UsageError: bad options


def test_every_command_parses_with_the_real_cli(compose: dict) -> None:
    for name, service in compose["services"].items():
        if service.get("image") != "persona-hpo:latest":
            continue  # PostgreSQL, PgBouncer, the S3 store: not our image
        for argv in _hpo_commands(service):
            ctx = _parse(argv)
            assert ctx.command.callback is not None, (name, argv)


def test_the_evaluator_watches_beside_the_workers(compose: dict) -> None:
    evaluator = compose["services"]["evaluator"]
    ctx = _parse(evaluator["command"])
    assert ctx.command.name == "evaluator" and ctx.params["watch"] is True
    # beside the workers, not after them: it waits for the database only
    assert set(evaluator["depends_on"]) == {"postgres", "pgbouncer", "s3"}


def test_dashboard_is_local_only_and_workers_and_evaluator_get_one_gpu(compose: dict) -> None:
    ports = compose["services"]["dashboard"]["ports"]
    assert all(str(p).startswith("127.0.0.1:") for p in ports)
    for name in ("worker", "evaluator"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["count"] == 1 and "gpu" in devices[0]["capabilities"], name


def test_docker_compose_accepts_the_file() -> None:
    """``docker-compose config``: the file is valid for Compose itself (no engine needed)."""
    import shutil
    import subprocess

    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    proc = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_study_config_used_by_compose_is_packaged(compose: dict) -> None:
    setup = compose["services"]["setup"]["command"][0]
    assert "/app/hpo/configs/cluster4.toml" in setup
    assert (ROOT / "hpo" / "configs" / "cluster4.toml").is_file()


def test_dockerfile_installs_the_packages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("hpo", "trainers", "evaluators", "storage"):
        assert f"COPY {package} {package}" in text
    assert 'ENTRYPOINT ["hpo"]' in text
    assert "torch==2.13.0" in text
