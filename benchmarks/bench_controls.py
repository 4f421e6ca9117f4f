"""Benchmark: the verdict's error rates, from planted effects and negative controls.

Each run is ``hpo demo`` at a small scale in one process (:func:`hpo.demo.run_demo` with
:class:`hpo.demo.DemoShortcuts`: the study's one trial in process, replies of at most 24 tokens,
the top trial only, no PNG; the per-persona adapters and the MoE merge are kept, so the whole
decision rule runs), on the controls' study (``hpo/configs/controls.toml``: one trial, lr 1e-3).
A planted run generates its dataset with a :class:`trainers.tiny.Plant` of the given strength
(docs/evaluation.md, "Planted effect and negative control"); a negative control (strength 0)
plants nothing, with the same sizes and seeds. The seed is the dataset's: other personas, other
replies, another split; everything else stays.

For each run one JSON line is appended to ``--out`` as soon as it ends, so a partial run still
counts and a second call resumes (runs already in the file are skipped). ``--report`` prints
the table from the file: per strength, the runs, how often the decision names a main result
(for a planted effect: the power; for the negative control: the false-positive rate), with
exact (Clopper-Pearson) 95% intervals, and how often the tuned cluster passed step 1.

Run:  .venv/bin/python benchmarks/bench_controls.py [--seeds 10] [--planted-seeds 5]
      [--strengths 0.8,0.5,0.3] [--personas 40] [--out controls.jsonl] [--report]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from evaluators.config import EvalConfig
from evaluators.report.decision import CLUSTER
from hpo.demo import DemoOptions, DemoShortcuts, run_demo
from hpo.study.config import packaged_config

SHORTCUTS = DemoShortcuts(
    in_process=True, eval_config=EvalConfig(max_new_tokens=24), top_k=1, moe=True, png=False
)
"""How every run is cut down (the same for planted and negative runs)."""


def run_one(strength: float, seed: int, personas: int, examples: int, root: Path) -> dict[str, Any]:
    """One control run: the demo at this strength and dataset seed; returns its JSON line."""
    options = DemoOptions(
        output_root=root,
        config=packaged_config("controls"),
        personas=personas,
        examples=examples,
        seed=seed,
        n_trials=1,
        plant_strength=strength,
        negative_control=strength == 0,
    )
    printed = io.StringIO()
    started = time.monotonic()
    result = run_demo(options, Console(file=printed, width=200), SHORTCUTS)
    seconds = time.monotonic() - started
    decision = result.decision
    numbers = decision.get("numbers", {})
    step1 = numbers.get("step1", {})
    passes = bool(step1) and all(
        isinstance(d, dict) and d.get("beats") for d in step1.values() if not isinstance(d, str)
    )
    versus_base = numbers.get("step4", {}).get(f"{CLUSTER} - base_model")
    membership = next((line for line in printed.getvalue().splitlines() if "(tuned):" in line), "")
    return {
        "strength": strength,
        "seed": seed,
        "personas": personas,
        "examples": examples,
        "main_result": decision.get("main_result"),
        "branch": decision.get("branch"),
        "cluster_passes_step1": passes,
        "cluster_minus_base": versus_base,
        "tuned_cluster": membership.strip(),
        "seconds": round(seconds, 1),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def runs_to_do(seeds: int, planted_seeds: int, strengths: list[float]) -> list[tuple[float, int]]:
    """Interleaved, so that a run cut short has some of every kind: seed by seed, the
    negative control first, then each strength."""
    order = []
    for seed in range(max(seeds, planted_seeds)):
        if seed < seeds:
            order.append((0.0, seed))
        order += [(s, seed) for s in strengths if seed < planted_seeds]
    return order


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact 95% interval of a rate of ``k`` in ``n``."""
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


def report(lines: list[dict[str, Any]]) -> str:
    """The markdown table of the JSON lines, one row per strength."""
    rows = [
        "| strength | personas x examples | runs | decision names a main result (95% CI) "
        "| cluster passes step 1 | median cluster - base (pt) | median s per run | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for strength in sorted({line["strength"] for line in lines}):
        mine = [line for line in lines if line["strength"] == strength]
        n = len(mine)
        named = sum(line["main_result"] is not None for line in mine)
        low, high = clopper_pearson(named, n)
        step1 = sum(line["cluster_passes_step1"] for line in mine)
        diffs = sorted(
            100 * line["cluster_minus_base"]["mean"]
            for line in mine
            if isinstance(line.get("cluster_minus_base"), dict)
        )
        median = f"{diffs[len(diffs) // 2]:+.1f}" if diffs else "-"
        seconds = sorted(line["seconds"] for line in mine)[n // 2]
        loads = sorted(line["load_1min"] for line in mine)[n // 2]
        kind = "negative control" if strength == 0 else f"planted {strength:g}"
        sizes = {(line["personas"], line["examples"]) for line in mine}
        size = ", ".join(f"{p} x {e}" for p, e in sorted(sizes))
        rows.append(
            f"| {kind} | {size} | {n} | {named}/{n} = {named / n:.0%} "
            f"({low:.0%}-{high:.0%}) | {step1}/{n} | {median} | {seconds:.0f} | {loads:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="negative-control runs")
    parser.add_argument("--planted-seeds", type=int, default=5, help="runs per strength")
    parser.add_argument("--strengths", default="0.8,0.5,0.3", help="planted strengths")
    parser.add_argument("--personas", type=int, default=40)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("controls.jsonl"))
    parser.add_argument("--report", action="store_true", help="print the table and stop")
    args = parser.parse_args()

    done = []
    if args.out.exists():
        done = [json.loads(line) for line in args.out.read_text().splitlines() if line]
    if args.report:
        print(report(done))
        return
    seen = {(d["strength"], d["seed"], d["personas"], d["examples"]) for d in done}
    strengths = [float(s) for s in args.strengths.split(",") if s]
    for strength, seed in runs_to_do(args.seeds, args.planted_seeds, strengths):
        if (strength, seed, args.personas, args.examples) in seen:
            continue
        root = Path(tempfile.mkdtemp(prefix="bench-controls-"))
        try:
            line = run_one(strength, seed, args.personas, args.examples, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        with args.out.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(
            f"strength {strength:g} seed {seed}: main result {line['main_result']}, "
            f"step 1 {'passed' if line['cluster_passes_step1'] else 'failed'}, "
            f"{line['seconds']:.0f} s, load {line['load_1min']}",
            flush=True,
        )
        done.append(line)
    print(report(done))


if __name__ == "__main__":
    main()
