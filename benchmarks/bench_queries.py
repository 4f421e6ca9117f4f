"""Benchmark: the study queries on a 10,000-trial study, against Optuna's own CLI.

Builds (once, into a SQLite file in the temp folder, reused while it exists) a study of
10,000 trials with 10 intermediate values each, made the way Optuna makes them
(``Study.add_trials`` of ``optuna.create_trial``), with the study config and the trial user
attributes our workers write. Then, interleaved, several repetitions of:

  A) ``optuna best-trial`` (Optuna's real CLI, a subprocess): loads every trial;
  B) ``hpo study best`` / ``status`` / ``trials`` (our real CLI, subprocesses too);
  C) the same queries in process (``hpo.study.queries``), without the start of a Python process.

and prints the median times and the ratios to A, in wall-clock time and in CPU time (user +
system of the process; the CPU time moves much less with the load of other jobs on the
machine, since it does not count the time waited for a core). Goal of the issue: B at most
0.15x A. ``hpo --help`` is timed too: the start of Python and of the root command, which
imports no command.

Run:  .venv/bin/python benchmarks/bench_queries.py [--trials 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

N_STEPS = 10
"""Intermediate values per trial, as the issue's study had."""
NAME = "bench-queries"


def _search_space() -> dict[str, Any]:
    import optuna

    return {
        "epochs": optuna.distributions.IntDistribution(1, 5),
        "batch_size": optuna.distributions.CategoricalDistribution((2, 4, 8)),
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
        "lora_rank": optuna.distributions.CategoricalDistribution((4, 8, 16)),
    }


def _trial(rng: random.Random, number: int, space: dict[str, Any]) -> Any:
    """One finished trial as a worker leaves it: mostly COMPLETE, some PRUNED or FAILed."""
    import optuna

    State = optuna.trial.TrialState
    params = {
        "epochs": rng.randint(1, 5),
        "batch_size": rng.choice((2, 4, 8)),
        "learning_rate": math.exp(rng.uniform(math.log(1e-5), math.log(1e-3))),
        "lora_rank": rng.choice((4, 8, 16)),
    }
    curve = {step: 3.0 / (1 + step) + rng.random() for step in range(1, N_STEPS + 1)}
    roll = rng.random()
    if roll < 0.05:
        return optuna.create_trial(
            state=State.FAIL,
            params=params,
            distributions=space,
            intermediate_values=curve,
            user_attrs={"fail_reason": "RuntimeError: CUDA out of memory", "worker": 1},
        )
    if roll < 0.25:
        return optuna.create_trial(
            state=State.PRUNED,
            params=params,
            distributions=space,
            intermediate_values=curve,
            user_attrs={"worker": 0},
        )
    return optuna.create_trial(
        state=State.COMPLETE,
        value=curve[N_STEPS],
        params=params,
        distributions=space,
        intermediate_values=curve,
        user_attrs={
            "adapter_path": f"models/trials/{NAME}/{number:05d}",
            "adapter_sha256": f"{rng.getrandbits(256):064x}",
            "worker": number % 4,
        },
    )


def build_study(path: Path, n_trials: int, seed: int = 0) -> str:
    """Build the study into ``path`` unless it is there already; returns its URL."""
    import optuna
    import sqlalchemy as sa

    from hpo.study.config import StudyConfig, StudySection
    from hpo.study.records import CONFIG_ATTR

    url = f"sqlite:///{path}"
    if path.exists():
        return url
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    rdb = optuna.storages.RDBStorage(f"sqlite:///{partial}")

    @sa.event.listens_for(rdb.engine, "connect")
    def _fast(dbapi_connection: Any, _record: Any) -> None:  # a scratch file: no fsync
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    rdb.engine.dispose()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=NAME, storage=rdb, direction="minimize")
    config = StudyConfig(study=StudySection(name=NAME, n_trials=n_trials))
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    rng = random.Random(seed)
    space = _search_space()
    batch = 500
    for start in range(0, n_trials, batch):
        study.add_trials(_trial(rng, n, space) for n in range(start, min(n_trials, start + batch)))
        print(f"  built {min(n_trials, start + batch)}/{n_trials} trials", file=sys.stderr)
    rdb.engine.dispose()
    partial.rename(path)
    print(f"built {path} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return url


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of a subprocess."""
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _children_cpu() - cpu


def _timed_call(function: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of a call in this process."""
    started, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="study file  [default: bench-queries-<trials>.db in the temp folder]",
    )
    args = parser.parse_args(argv)
    path = args.db or Path(tempfile.gettempdir()) / f"bench-queries-{args.trials}.db"
    url = build_study(path, args.trials)

    from hpo.study import queries

    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, HPO_STORAGE=url, PYTHONWARNINGS="ignore")
    hpo = [sys.executable, "-m", "hpo", "study"]
    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "optuna best-trial": lambda: _timed(
            [str(bin_dir / "optuna"), "best-trial", "--storage", url, "--study-name", NAME],
            env,
        ),
        "hpo study best": lambda: _timed([*hpo, "best", "--study", NAME], env),
        "hpo study status": lambda: _timed([*hpo, "status", "--study", NAME], env),
        "hpo study trials": lambda: _timed([*hpo, "trials", "--study", NAME], env),
        "hpo study list": lambda: _timed([*hpo, "list"], env),
        "hpo --help (start-up only)": lambda: _timed([sys.executable, "-m", "hpo", "--help"], env),
        "best_trials (in process)": lambda: _timed_call(lambda: queries.best_trials(url, NAME, 5)),
        "study_status (in process)": lambda: _timed_call(lambda: queries.study_status(url, NAME)),
        "trials_page (in process)": lambda: _timed_call(lambda: queries.trials_page(url, NAME)),
    }
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in runs.values():  # warm the file cache and the engines once
            run()
        for repeat in range(args.repeats):  # interleaved: the machine's load hits all alike
            for label, run in runs.items():
                times[label].append(run())
            print(f"  repetition {repeat + 1}/{args.repeats} done", file=sys.stderr)
    base = [statistics.median(t[i] for t in times["optuna best-trial"]) for i in (0, 1)]
    print(f"\n{args.trials} trials x {N_STEPS} intermediate values, {url}")
    print(
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, medians of {args.repeats}"
    )
    print(f"{'command':28} {'wall s':>8} {'ratio':>7} {'CPU s':>8} {'ratio':>7}")
    for label, values in times.items():
        wall, cpu = (statistics.median(t[i] for t in values) for i in (0, 1))
        print(f"{label:28} {wall:8.3f} {wall / base[0]:6.3f}x {cpu:8.3f} {cpu / base[1]:6.3f}x")


if __name__ == "__main__":
    main()
