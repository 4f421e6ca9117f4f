"""Benchmark: does a study find a better adapter than the hand-picked grid, for less compute?

Compute is counted in optimizer steps. On cluster 4 of a generated demo dataset:
  - the grid: the plan's three seed configs, 5 epochs each, no pruning;
  - the study: the same three enqueued first, then TPE, under each pruner, with a step
    budget (``[study] max_steps``) equal to the grid's steps, run by one worker in-process
    through the real service (``create_study`` and ``run_worker``: budget, pruner, recipe).
With the seed configs first and no pruning, the budget is spent by exactly the grid, so the
``none`` study is the grid and runs once; the other pruners run once per sampler seed. The
table gives, per pruner, the median over seeds of: configs tried (trials that trained to at
least one evaluation), the best eval_loss of a complete trial, and the steps after which the
study first had a complete trial as good as the grid's best ("-" if it never had).

Run:  .venv/bin/python benchmarks/bench_compute_to_best.py [--seeds 0 1 2]
The data is scaled to fit a loaded 2-core CPU (see the options); BENCHMARKS.md has a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

import storage
from hpo.datasets import cluster_dataset, import_dataset, load_study_cluster
from hpo.study.config import StudyConfig, load_config, packaged_config, train_config_for
from hpo.study.creation import create_study, load_study
from hpo.study.strategies import PrunerConfig, SamplerConfig
from hpo.study.trial_records import records_of, trial_fields
from hpo.workers.step_budget import optimizer_steps
from hpo.workers.worker import run_worker
from trainers.batching import prompt_pairs
from trainers.data import SplitConfig
from trainers.tiny import write_demo_dataset

PRUNERS = ("none", "median", "successive_halving", "hyperband")
DATASET = "bench"
MATCH_TOLERANCE = 1e-4
"""Relative: a seed config trained again on CPU can differ from its grid run in the 7th digit,
and is still the grid's best."""


@dataclass(frozen=True)
class StudyRun:
    """What one study did, trial by trial in the order they ran (one worker)."""

    pruner: str
    seed: int
    tried: int
    best: float | None
    steps_to_grid_best: int | None
    steps_used: int
    seconds: float


def base_config(args: argparse.Namespace) -> StudyConfig:
    """The demo study's config on the benchmark's data scale."""
    config = load_config(packaged_config("demo"))
    data = dataclasses.replace(
        config.train.data,
        max_train_per_persona=args.train_per_persona,
        max_val_per_persona=args.val_per_persona,
    )
    return dataclasses.replace(
        config,
        study=dataclasses.replace(config.study, dataset=DATASET, n_trials=args.max_trials),
        train=dataclasses.replace(config.train, data=data),
    )


def grid_steps(config: StudyConfig, n_train: int) -> int:
    """Optimizer steps of the seed configs trained to the end."""
    return sum(
        optimizer_steps(train_config_for(config, params), n_train)[1]
        for params in config.seed_trials
    )


def run_study(
    url: str, root: Path, config: StudyConfig, pruner: str, seed: int, grid_best: float | None
) -> tuple[StudyRun, list[optuna.trial.FrozenTrial], dict[int, int]]:
    """Create and run one study with one in-process worker; summarize its trials (and give
    each trial's optimizer steps)."""
    name = f"{pruner}-seed{seed}".replace("_", "-")
    config = dataclasses.replace(
        config,
        study=dataclasses.replace(config.study, name=name),
        sampler=SamplerConfig(name="tpe", seed=seed),
        pruner=PrunerConfig(name=pruner),
    )
    create_study(config, url)
    started = time.monotonic()
    run_worker(url, name, output_root=root)
    seconds = time.monotonic() - started
    study, _ = load_study(url, name)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    steps = trained_steps(url, name, trials)
    used, best, matched, tried = 0, None, None, 0
    for trial in trials:
        used += steps[trial.number]
        tried += bool(trial.intermediate_values)
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            best = trial.value if best is None else min(best, trial.value)
            good = grid_best is not None and trial.value <= grid_best * (1 + MATCH_TOLERANCE)
            if matched is None and good:
                matched = used
    with storage.session_scope(storage.open_storage(url)) as session:
        charged = storage.step_budget(session, name)
    assert charged is not None and (charged.max_steps is None or used <= charged.max_steps)
    return StudyRun(pruner, seed, tried, best, matched, used, seconds), trials, steps


def _median(values: list[float | int | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return "-" if not known else f"- ({len(known)}/{len(values)} seeds)"
    value = statistics.median(known)
    return f"{value:.4f}" if isinstance(value, float) and value < 10 else f"{value:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=PRUNERS)
    parser.add_argument("--personas", type=int, default=30, help="generated personas")
    parser.add_argument("--examples", type=int, default=8, help="examples per persona")
    parser.add_argument("--train-per-persona", type=int, default=2)
    parser.add_argument("--val-per-persona", type=int, default=1)
    parser.add_argument("--max-trials", type=int, default=60, help="n_trials of each study")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("hpo").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-c2b-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'bench.db'}"
        engine = storage.open_storage(url)
        path = write_demo_dataset(
            root / "bench.jsonl", n_personas=args.personas, examples_per_persona=args.examples
        )
        import_dataset(engine, path, name=DATASET, split=SplitConfig(n_test=2))
        config = base_config(args)
        cluster_dataset(engine, DATASET, k=config.study.k, seed=config.study.clustering_seed)
        cluster = load_study_cluster(engine, config.study)
        n_train = len(prompt_pairs(cluster.personas, "train", args.train_per_persona))
        n_val = len(prompt_pairs(cluster.personas, "val", args.val_per_persona))
        steps = grid_steps(config, n_train)
        print(
            f"cluster {config.study.cluster_id}: {len(cluster.personas)} personas, "
            f"{n_train} train / {n_val} val examples; grid: {len(config.seed_trials)} configs, "
            f"{steps} optimizer steps",
            flush=True,
        )
        budgeted = dataclasses.replace(
            config, study=dataclasses.replace(config.study, max_steps=steps)
        )
        # The grid: the none study (seed configs first, no pruning, the grid's steps).
        grid, grid_trials, grid_trained = run_study(
            url, root, budgeted, "none", args.seeds[0], None
        )
        assert [t.params for t in grid_trials] == list(config.seed_trials), "not the grid"
        assert grid.steps_used == steps and grid.best is not None
        print(f"grid: best eval_loss {grid.best:.4f}, {grid.seconds:.0f} s", flush=True)
        runs: list[StudyRun] = []
        for pruner in [p for p in args.pruners if p != "none"]:
            for seed in args.seeds:
                run, trials, trained = run_study(url, root, budgeted, pruner, seed, grid.best)
                runs.append(run)
                print(f"  {run}", flush=True)
                for t in trials:
                    print(f"    {_trial_line(t, trained[t.number])}", flush=True)

    print(f"\ngrid = the none study: {steps} steps, best eval_loss {grid.best:.4f}")
    print(
        "| pruner | configs tried | best eval_loss | vs grid | steps to grid's best "
        "| steps used | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    matched_grid = [grid.steps_used - grid_steps_of_best(grid_trials, grid_trained)]
    print(
        f"| none (= grid) | {grid.tried} | {grid.best:.4f} | 0.0% | "
        f"{matched_grid[0]} ({matched_grid[0] / steps:.0%}) | {grid.steps_used} | "
        f"{grid.seconds:.0f} |"
    )
    for pruner in [p for p in args.pruners if p != "none"]:
        mine = [r for r in runs if r.pruner == pruner]
        best = [r.best for r in mine]
        known = [b for b in best if b is not None]
        gain = (
            f"{(grid.best - statistics.median(known)) / grid.best:+.1%}"
            if len(known) == len(best)
            else "-"
        )
        to_best = [r.steps_to_grid_best for r in mine]
        share = (
            f" ({statistics.median(to_best) / steps:.0%})"  # type: ignore[type-var]
            if None not in to_best
            else ""
        )
        print(
            f"| {pruner} | {_median([r.tried for r in mine])} | {_median(best)} | {gain} "
            f"| {_median(to_best)}{share} | {_median([r.steps_used for r in mine])} "
            f"| {_median([r.seconds for r in mine])} |"
        )
    print(f"(medians over sampler seeds {args.seeds}; 'vs grid': lower eval_loss is +)")


def trained_steps(url: str, name: str, trials: list[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """{trial number: optimizer steps it trained}, from the trials' records (the user
    attributes of trials run before the records)."""
    records = records_of(storage.open_storage(url), name)
    return {
        t.number: int(trial_fields(t.user_attrs, records.get(t.number)).get("train_steps", 0))
        for t in trials
    }


def _trial_line(t: optuna.trial.FrozenTrial, steps: int) -> str:
    value = "" if t.value is None else f" {t.value:.4f}"
    return (
        f"#{t.number} {t.state.name}{value} evals={len(t.intermediate_values)} "
        f"steps={steps} {t.params}"
    )


def grid_steps_of_best(trials: list[optuna.trial.FrozenTrial], steps: dict[int, int]) -> int:
    """Steps the grid trains after its best config (the grid matched its best before them)."""
    best = min(trials, key=lambda t: t.value if t.value is not None else float("inf"))
    return sum(steps[t.number] for t in trials if t.number > best.number)


if __name__ == "__main__":
    main()
