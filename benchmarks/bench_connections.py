"""Benchmark: PostgreSQL server connections of N real ``hpo worker`` processes, per mode.

For each mode, a fresh database on the machine's PostgreSQL, the demo dataset's cluster, and
one study whose trials are scaled down through the normal config (1 epoch, 1 training example
per persona in one batch: one optimizer step and one evaluation per trial; no stub trainer).
N real ``hpo worker`` processes start at once, and a sampler counts the server's connections
to that database every 0.1 s (``pg_stat_activity``) until they exit. Modes:

  direct     the workers connect to PostgreSQL itself (our engines keep no pool);
  pgbouncer  the workers connect through PgBouncer in transaction mode (Debian's package,
             started here on 127.0.0.1 with at most 20 server connections).

Printed per mode: peak and median server connections, trials per minute (wall-clock, with N
processes starting on this machine's cores), whether the budget stayed exact (finished trials
== n_trials, distinct numbers, none RUNNING), and how many workers exited non-zero (a worker
locked out by "too many clients" exits 1).

Run:  .venv/bin/python benchmarks/bench_connections.py [--workers 40] [--trials 80]
          [--modes direct,pgbouncer]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers, as a script

import storage
from hpo.datasets import cluster_dataset, import_dataset
from hpo.study.config import ParamSpec, StudyConfig, StudySection
from hpo.study.creation import create_study, load_study
from hpo.study.queries import study_status
from hpo.study.strategies import PrunerConfig, SamplerConfig
from hpo.workers.launch import start_workers, wait_for_workers
from tests.servers import pgbouncer
from trainers.config import DataConfig, TrainConfig
from trainers.tiny import write_demo_dataset

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NAME = "bench-connections"


def study_config(trials: int) -> StudyConfig:
    """One optimizer step and one evaluation per trial, through the normal config."""
    return StudyConfig(
        study=StudySection(name=NAME, dataset="bench", k=5, cluster_id=0, n_trials=trials),
        sampler=SamplerConfig(name="random", seed=0),
        pruner=PrunerConfig(name="none"),
        search_space={
            "epochs": ParamSpec("categorical", choices=(1,)),
            "batch_size": ParamSpec("categorical", choices=(64,)),
            "learning_rate": ParamSpec("float", low=1e-5, high=1e-3, log=True),
            "lora_rank": ParamSpec("categorical", choices=(4,)),
        },
        seed_trials=(),
        train=TrainConfig(
            evals_per_epoch=1,
            data=DataConfig(max_train_per_persona=1, max_val_per_persona=1),
        ),
    )


class Sampler(threading.Thread):
    """Counts the server connections to one database every 0.1 s until stopped."""

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.samples: list[int] = []
        self.done = threading.Event()
        self.engine = sa.create_engine(ADMIN_URL, pool_size=1)

    def run(self) -> None:
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = :db AND backend_type = 'client backend'"
        )
        with self.engine.connect() as conn:
            while not self.done.is_set():
                self.samples.append(int(conn.execute(query, {"db": self.database}).scalar_one()))
                conn.commit()
                time.sleep(0.1)


def prepare(url: str, root: Path, trials: int) -> None:
    engine = storage.open_storage(url)
    path = write_demo_dataset(root / "bench.jsonl", n_personas=60, examples_per_persona=12)
    import_dataset(engine, path, name="bench")
    cluster_dataset(engine, "bench", k=5)
    create_study(study_config(trials), url)
    storage.dispose_engines()


def run_mode(mode: str, workers: int, trials: int, root: Path) -> dict[str, object]:
    database = f"hpo_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    direct = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    folder = root / mode
    folder.mkdir()
    try:
        prepare(direct, folder, trials)
        with pgbouncer() if mode == "pgbouncer" else contextlib.nullcontext() as bouncer:
            url = bouncer.url(direct) if bouncer is not None else direct
            sampler = Sampler(database)
            sampler.start()
            started = time.monotonic()
            procs = start_workers(url, NAME, n_workers=workers, output_root=folder, threads=1)
            codes = wait_for_workers(procs, interval=0.5)
            seconds = time.monotonic() - started
            sampler.done.set()
            sampler.join()
            sampler.engine.dispose()
        status = study_status(direct, NAME)
        study, _ = load_study(direct, NAME)
        numbers = [t.number for t in study.get_trials(deepcopy=False)]
        exact = (
            status.finished == trials
            and len(numbers) == len(set(numbers))
            and status.counts.get("RUNNING", 0) == 0
        )
        storage.dispose_engines()
        return {
            "mode": mode,
            "workers": workers,
            "peak": max(sampler.samples),
            "median": statistics.median(sampler.samples),
            "trials_per_min": status.finished / seconds * 60,
            "seconds": seconds,
            "exact": exact,
            "failed_workers": sum(1 for c in codes if c != 0),
            "finished": status.finished,
        }
    finally:
        storage.dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=40)
    parser.add_argument("--trials", type=int, default=None, help="default: 2 per worker")
    parser.add_argument("--modes", default="direct,pgbouncer")
    args = parser.parse_args()
    trials = args.trials or 2 * args.workers
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            rows.append(run_mode(mode, args.workers, trials, Path(tmp)))
            print(rows[-1], flush=True)
    print()
    print(
        "| mode | workers | peak server connections | median | trials/min | budget exact "
        "| workers failed |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['workers']} | {r['peak']} | {r['median']} "
            f"| {r['trials_per_min']:.1f} | {'yes' if r['exact'] else 'NO'} "
            f"({r['finished']}/{trials}) | {r['failed_workers']} |"
        )


if __name__ == "__main__":
    main()
