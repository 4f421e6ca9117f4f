"""A real out-of-memory on the CPU: work run in a child process under an address-space limit.

Under ``resource.setrlimit(RLIMIT_AS, ...)`` torch's CPU allocator raises ``RuntimeError:
... DefaultCPUAllocator: can't allocate memory`` for real. The limit is set once the base
model is loaded, at the process's size then (``VmSize``) plus a headroom, so that it does not
depend on how big the libraries are on one machine. The child runs so that its size follows
what is alive: one torch thread, one malloc arena (``MALLOC_ARENA_MAX=1``: a thread's own
arena would reserve 64 MiB), large blocks mapped and unmapped (``MALLOC_MMAP_THRESHOLD_``),
small thread stacks (the heartbeat thread's).

Run as ``python -m tests.memory_limit SCENARIO 'JSON ARGS'``; the last line of its output is
the scenario's result as JSON. :func:`run_child` does that from a test.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 2**20
CHILD_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The child's environment on top of the test's (see the module docstring)."""


def vm_size() -> int:
    """This process's virtual size in bytes (what RLIMIT_AS limits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def limit_memory(headroom_mib: float) -> int:
    """Allow this process ``headroom_mib`` more than it has mapped now; returns the limit."""
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    limit = vm_size() + int(headroom_mib * MIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    return limit


def unlimit_memory() -> None:
    """Lift the limit again (the hard limit stayed infinite)."""
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def run_child(scenario: str, args: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run a scenario of this module in a child process and return its JSON result.

    Raises:
        AssertionError: If the child failed, with its output.
    """
    env = {**os.environ, **CHILD_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.memory_limit", scenario, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"child {scenario} failed:\n{proc.stdout}{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["log"] = proc.stderr
    return result


def _worker(args: dict[str, Any]) -> dict[str, Any]:
    """``run_worker`` as ``hpo worker`` runs it, once per study of ``args["runs"]``, with that
    run's limit set right after the worker has loaded the base model (the worker loads it
    itself, so its loader is wrapped)."""
    import trainers.base_model
    from hpo.workers.worker import run_worker

    load = trainers.base_model.load_base_model
    results = []
    for run in args["runs"]:

        def load_then_limit(config: Any, headroom: float = run["headroom_mib"]) -> Any:
            base = load(config)
            limit_memory(headroom)
            return base

        trainers.base_model.load_base_model = load_then_limit
        summary = run_worker(
            args["url"], run["study"], output_root=Path(args["output_root"]), threads=1
        )
        unlimit_memory()
        results.append({"study": run["study"], "trials": summary.trials})
    return {"runs": results}


def long_pairs(n: int) -> list[Any]:
    """``n`` prompt/reply pairs whose rows fill the training length (256 tokens): memory per
    row is then the same for every row, so micro-batches differ by their size alone."""
    from trainers.batching import PromptPair

    persona = " ".join(f"I like thing number {k}." for k in range(40))
    prompt = "Persona: {}\nA: What did you do on day {}?\nB:"
    return [PromptPair(prompt.format(persona, i), f" I walked {i} dogs.") for i in range(n)]


def varied_long_prompts(n: int) -> list[str]:
    """``n`` prompts of the demo's personas and conversations, each persona said three times
    (about 250 tokens): long rows, and replies that differ from persona to persona."""
    from trainers.prompt import build_prompt
    from trainers.tiny.generator import generate_personas

    records = generate_personas(n_personas=max(n, 10), examples_per_persona=1, seed=0)
    return [
        build_prompt(" ".join([str(r["persona"])] * 3), "\n".join(r["context"]))  # type: ignore[arg-type]
        for r in records[:n]
    ]


def _train(args: dict[str, Any]) -> dict[str, Any]:
    """train_lora twice on the tiny model: the limit set at the first report, so that the
    next step runs out of memory mid-run; then a limit that not even one row fits."""
    from trainers.base_model import load_base_model
    from trainers.config import ModelConfig, TrainConfig
    from trainers.memory import OutOfMemory
    from trainers.recipe import train_lora

    base = load_base_model(ModelConfig())
    pairs = long_pairs(args["batch_size"] * 2)
    config = TrainConfig(epochs=1, batch_size=args["batch_size"], evals_per_epoch=2)
    reports: list[tuple[int, float]] = []

    def report(step: int, eval_loss: float) -> bool:
        reports.append((step, eval_loss))
        if step == 1:
            limit_memory(args["headroom_mib"])
        return False

    log_path = Path(args["log_path"])
    result = train_lora(base, config, pairs, pairs[:4], report=report, log_path=log_path)
    unlimit_memory()
    limit_memory(args["tight_mib"])
    try:
        train_lora(base, config, pairs, pairs[:4])
        sizes: list[int] | None = None
    except OutOfMemory as exc:
        sizes = list(exc.sizes)
    unlimit_memory()
    return {
        "reports": reports,
        "eval_losses": result.eval_losses,
        "micro_batch_size": result.micro_batch_size,
        "gradient_accumulation_steps": result.gradient_accumulation_steps,
        "oom_retries": result.oom_retries,
        "train_steps": result.train_steps,
        "exhausted_sizes": sizes,
        "lora_modules_left": [n for n, _ in base.model.named_modules() if "lora_" in n],
    }


def _generate(args: dict[str, Any]) -> dict[str, Any]:
    """The same prompts generated as one batch without a limit, then under one."""
    from evaluators.config import EvalConfig
    from evaluators.scoring.generation import generate_replies
    from trainers.base_model import load_base_model
    from trainers.config import ModelConfig

    base = load_base_model(ModelConfig())
    prompts = varied_long_prompts(args["n"])
    config = EvalConfig(batch_size=args["n"], max_new_tokens=args["max_new_tokens"])
    free = generate_replies(base, prompts, eval_config=config)
    limit_memory(args["headroom_mib"])
    limited = generate_replies(base, prompts, eval_config=config)
    unlimit_memory()
    return {"free": free, "limited": limited}


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "worker": _worker,
    "train": _train,
    "generate": _generate,
}


def main() -> None:
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    threading.stack_size(512 * 1024)
    import torch

    torch.set_num_threads(1)
    result = SCENARIOS[scenario](args)
    unlimit_memory()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
