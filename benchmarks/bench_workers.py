"""Benchmark: does a study finish sooner with more CPU workers on this machine?

Runs the same study twice, side by side in one process, and prints the ratio:
  A) 1 worker with all cores as torch threads,
  B) N workers (default 2) sharing the cores (cores // N threads each).
Every trial does the same work (same epochs, batch size and rank; only the learning rate
differs) and nothing is pruned, so the two runs train exactly the same number of steps.

Run:  .venv/bin/python benchmarks/bench_workers.py [--workers 2] [--trials 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import storage
from hpo.datasets import cluster_dataset, import_dataset
from hpo.study.config import ParamSpec, StudyConfig, StudySection
from hpo.study.creation import create_study
from hpo.study.queries import study_status
from hpo.study.strategies import PrunerConfig, SamplerConfig
from hpo.workers.launch import start_workers, wait_for_workers
from trainers.config import DataConfig, TrainConfig
from trainers.data import SplitConfig
from trainers.tiny import write_demo_dataset


def study_config(name: str, trials: int) -> StudyConfig:
    rates = [1e-4 * (i + 1) for i in range(trials)]
    return StudyConfig(
        study=StudySection(name=name, dataset="bench", k=5, cluster_id=4, n_trials=trials),
        sampler=SamplerConfig(name="random", seed=0),
        pruner=PrunerConfig(name="none"),
        search_space={
            "epochs": ParamSpec("categorical", choices=(2,)),
            "batch_size": ParamSpec("categorical", choices=(4,)),
            "learning_rate": ParamSpec("float", low=1e-5, high=1e-2, log=True),
            "lora_rank": ParamSpec("categorical", choices=(8,)),
        },
        seed_trials=tuple(
            {"epochs": 2, "batch_size": 4, "learning_rate": lr, "lora_rank": 8} for lr in rates
        ),
        train=TrainConfig(data=DataConfig(max_train_per_persona=10, max_val_per_persona=2)),
    )


def run(url: str, root: Path, name: str, trials: int, workers: int, threads: int) -> float:
    create_study(study_config(name, trials), url)
    started = time.monotonic()
    codes = wait_for_workers(
        start_workers(url, name, n_workers=workers, output_root=root, threads=threads),
        interval=0.5,
    )
    seconds = time.monotonic() - started
    status = study_status(url, name)
    assert codes == [0] * workers and status.finished == trials, (codes, status)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'bench.db'}"
        engine = storage.open_storage(url)
        path = write_demo_dataset(root / "bench.jsonl", n_personas=200, examples_per_persona=40)
        import_dataset(engine, path, name="bench", split=SplitConfig())
        cluster_dataset(engine, "bench", k=5)
        one = run(url, root, "one-worker", args.trials, 1, cores)
        many = run(
            url, root, "many-workers", args.trials, args.workers, max(1, cores // args.workers)
        )
    print(f"cores: {cores}; trials per study: {args.trials} (identical work, none pruned)")
    print(f"1 worker x {cores} threads: {one:7.1f} s  ({60 * args.trials / one:5.2f} trials/min)")
    print(
        f"{args.workers} workers x {max(1, cores // args.workers)} threads: {many:7.1f} s  "
        f"({60 * args.trials / many:5.2f} trials/min)"
    )
    print(f"speed-up of {args.workers} workers over 1: {one / many:.2f}x")


if __name__ == "__main__":
    main()
