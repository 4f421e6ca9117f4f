"""The ``hpo`` command line: a thin layer over the library functions.

Exit codes: 0 success, 2 bad input (one-line reason), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="SQL storage URL of the study and our tables (env HPO_STORAGE; default "
        "sqlite:///hpo.db). Use postgresql+psycopg://user@host/db for many workers.",
    )
    common.add_argument(
        "--output-root",
        type=Path,
        default=Path(os.environ.get("HPO_OUTPUT_ROOT", ".")),
        metavar="DIR",
        help="root of models/, logs/, results/, data/ (env HPO_OUTPUT_ROOT; "
        "default: the current directory)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log more; show tracebacks")
    return common


def _url(args: argparse.Namespace) -> str:
    import storage

    return args.storage or storage.default_storage_url()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- data -------------------------------------------------------------------------------------


def cmd_data_generate(args: argparse.Namespace) -> int:
    from trainers.generator import write_demo_dataset

    out = args.out or args.output_root / "data" / "demo_personas.jsonl"
    write_demo_dataset(
        out, n_personas=args.personas, examples_per_persona=args.examples, seed=args.seed
    )
    print(f"wrote {args.personas} personas x {args.examples} examples to {out}")
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    import storage
    from hpo.pipeline import import_dataset
    from trainers.data import SplitConfig

    split = SplitConfig(n_test=args.n_test, val_fraction=args.val_fraction, seed=args.split_seed)
    summary = import_dataset(
        storage.open_storage(_url(args)), args.path, name=args.name, split=split
    )
    print(
        f"dataset {summary.name!r}: {summary.n_personas} personas, {summary.n_examples} "
        f"examples, sha256 {summary.sha256[:12]}"
    )
    return 0


def cmd_data_cluster(args: argparse.Namespace) -> int:
    from rich.console import Console

    import storage
    from hpo.display import cluster_table
    from hpo.pipeline import cluster_dataset

    _, result = cluster_dataset(
        storage.open_storage(_url(args)),
        args.dataset,
        k=args.k,
        seed=args.seed,
        embedding_model=args.embedding_model,
    )
    Console().print(
        cluster_table(
            result.clusters, result.silhouette, f"dataset {args.dataset}: KMeans k={args.k}"
        )
    )
    return 0


# --- train ------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    import storage
    from hpo.pipeline import load_cluster, train_cluster_adapter
    from trainers.config import DataConfig, ModelConfig, TrainConfig

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lora_rank=args.rank,
        data=DataConfig(max_train_per_persona=args.max_train_per_persona),
    )
    engine = storage.open_storage(_url(args))
    cluster = load_cluster(engine, args.dataset, args.k, args.cluster_id)
    layout = storage.OutputLayout(args.output_root.resolve())
    target = args.out or layout.cluster_adapter_dir(args.cluster_id)
    log_path = layout.log_path(f"train-cluster-{args.cluster_id:02d}")
    result = train_cluster_adapter(
        cluster, config, ModelConfig(base_model=args.base_model), target, log_path=log_path
    )
    print(
        f"eval_loss {result.final_eval_loss:.4f} after {result.train_steps} steps "
        f"({result.seconds:.0f} s); adapter: {target}; log: {log_path}"
    )
    return 0


# --- study ------------------------------------------------------------------------------------


def cmd_study_create(args: argparse.Namespace) -> int:
    import dataclasses

    from hpo.config import load_config
    from hpo.study import create_study

    config = load_config(args.config)
    if args.n_trials:
        config = dataclasses.replace(
            config, study=dataclasses.replace(config.study, n_trials=args.n_trials)
        )
    study = create_study(config, _url(args))
    print(
        f"study {study.study_name!r} ready: {config.study.n_trials} trials on cluster "
        f"{config.study.cluster_id} of dataset {config.study.dataset!r}; start workers with "
        f"`hpo launch --study {study.study_name}`"
    )
    return 0


def cmd_study_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpo.display import status_table
    from hpo.queries import study_status

    status = study_status(_url(args), args.study)
    if args.json:
        _print_json(
            {
                "study": status.name,
                "target": status.n_trials_target,
                "finished": status.finished,
                "counts": status.counts,
                "best": status.best.to_dict() if status.best else None,
            }
        )
    else:
        Console().print(status_table(status))
    return 0


def cmd_study_best(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpo.display import trials_table
    from hpo.queries import best_trials

    rows = best_trials(_url(args), args.study, args.n)
    if args.json:
        _print_json([r.to_dict() for r in rows])
    elif not rows:
        print(f"study {args.study!r} has no COMPLETE trial yet")
    else:
        Console().print(trials_table(rows, f"best {len(rows)} trials of {args.study}"))
    return 0


def cmd_study_trials(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpo.display import trials_table
    from hpo.queries import all_trials

    rows = all_trials(_url(args), args.study)
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        Console().print(trials_table(rows, f"trials of {args.study}"))
    return 0


# --- workers ----------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from hpo.worker import run_worker

    summary = run_worker(
        _url(args),
        args.study,
        output_root=args.output_root,
        worker_index=args.worker_index,
        threads=args.threads,
        grace_period=args.grace_period,
        max_trials=args.max_trials,
    )
    print(
        f"worker {summary.worker_index}: {len(summary.trials)} trials "
        f"({summary.count('COMPLETE')} complete, {summary.count('PRUNED')} pruned, "
        f"{summary.count('FAIL')} failed)"
        + (" - stopped by signal" if summary.stopped_by_signal else "")
    )
    return 130 if summary.stopped_by_signal else 0


def cmd_launch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpo.display import study_progress
    from hpo.launch import start_workers, wait_for_workers

    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    workers = start_workers(
        _url(args),
        args.study,
        n_workers=args.workers,
        gpus=gpus,
        output_root=args.output_root,
        threads=args.threads,
    )
    for w in workers:
        print(
            f"worker {w.index} pid {w.process.pid}"
            + (f" gpu {w.gpu}" if w.gpu is not None else "")
            + f" log {w.log_path}"
        )
    with study_progress(_url(args), args.study, Console()) as refresh:
        codes = wait_for_workers(workers, poll=refresh)
    print(f"workers exited with {codes}")
    return 0 if not any(codes) else 1


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from hpo.study import optuna_storage

    print(
        f"optuna-dashboard on http://{args.host}:{args.port} (no authentication: keep it on "
        "127.0.0.1 or behind a proxy that has one)"
    )
    run_server(optuna_storage(_url(args)), host=args.host, port=args.port)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hpo.display import similarity_table
    from hpo.evaluate import evaluate_best

    report, path = evaluate_best(
        _url(args),
        args.study,
        output_root=args.output_root,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )
    Console().print(similarity_table(report))
    print(f"results: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hpo.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            output_root=args.output_root,
            storage_url=args.storage or os.environ.get("HPO_STORAGE"),
            personas=args.personas,
            examples=args.examples,
            seed=args.seed,
            workers=args.workers,
            n_trials=args.n_trials,
            config=args.config,
        )
    )
    return 0


# --- parser -----------------------------------------------------------------------------------


def _add(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    example: str,
    parents: Sequence[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help,
        description=help,
        parents=list(parents),
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The full parser: every subcommand with help and an example."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter optimization of persona LoRA adapters: Optuna studies on "
        "SQL storage, trial workers with pruning, and full evaluation of the best "
        "trial.",
        epilog="example:\n  hpo demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser(
        "data",
        help="generate, import and cluster persona datasets",
        description="generate, import and cluster persona datasets",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = _add(
        data_sub,
        "generate",
        cmd_data_generate,
        "write the demo persona dataset (JSONL), deterministic by seed",
        "hpo data generate --out data/demo.jsonl --personas 200 --examples 40",
        [common],
    )
    p.add_argument(
        "--out", type=Path, help="JSONL path (default OUTPUT_ROOT/data/demo_personas.jsonl)"
    )
    p.add_argument("--personas", type=int, default=200, help="number of personas (200)")
    p.add_argument("--examples", type=int, default=40, help="examples per persona (40)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    p = _add(
        data_sub,
        "import",
        cmd_data_import,
        "validate a JSONL dataset and store it with a deterministic split",
        "hpo data import data/demo.jsonl --name demo",
        [common],
    )
    p.add_argument("path", type=Path, help="JSONL file (see README: dataset format)")
    p.add_argument("--name", help="dataset name (default: the file's stem)")
    p.add_argument("--n-test", type=int, default=10, help="test examples per persona (10)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the rest held out for eval_loss (0.1)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split (0)")
    p = _add(
        data_sub,
        "cluster",
        cmd_data_cluster,
        "embed persona texts and cluster them with KMeans; prints the cluster table",
        "hpo data cluster --dataset demo --k 5",
        [common],
    )
    p.add_argument("--dataset", required=True, help="an imported dataset name")
    p.add_argument("--k", type=int, default=5, help="number of clusters (5)")
    p.add_argument("--seed", type=int, default=0, help="KMeans seed (0)")
    p.add_argument(
        "--embedding-model",
        default=None,
        help="sentence-transformers model path (default: packaged all-MiniLM-L6-v2)",
    )

    p = _add(
        sub,
        "train",
        cmd_train,
        "train one cluster adapter with given hyperparameters",
        "hpo train --dataset demo --cluster-id 4 --epochs 5 --batch-size 2 --lr 2e-4 --rank 8",
        [common],
    )
    p.add_argument("--dataset", default="demo", help="dataset name (demo)")
    p.add_argument("--k", type=int, default=5, help="k of the clustering (5)")
    p.add_argument("--cluster-id", type=int, default=4, help="cluster to train on (4)")
    p.add_argument("--epochs", type=int, default=5, help="epochs (5)")
    p.add_argument("--batch-size", type=int, default=2, help="batch size (2)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (2e-4)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (8)")
    p.add_argument(
        "--max-train-per-persona",
        type=int,
        default=None,
        help="cap on train examples per persona (all)",
    )
    p.add_argument(
        "--base-model",
        default="tiny",
        help="'tiny' (built locally) or a Hugging Face model path or id",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="adapter directory (default OUTPUT_ROOT/models/lora_clusters/cluster_NN)",
    )

    study = sub.add_parser(
        "study",
        help="create a study and query its trials",
        description="create a study and query its trials",
    )
    study_sub = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    p = _add(
        study_sub,
        "create",
        cmd_study_create,
        "create a study from a TOML config and enqueue the three seed configs",
        "hpo study create --config hpo/configs/cluster4.toml",
        [common],
    )
    p.add_argument("--config", required=True, type=Path, help="study config (TOML)")
    p.add_argument("--n-trials", type=int, help="override study.n_trials")
    for name, func, helptext, example in (
        (
            "status",
            cmd_study_status,
            "trial counts by state and the best trial",
            "hpo study status --study cluster4",
        ),
        (
            "best",
            cmd_study_best,
            "the best COMPLETE trials by eval_loss",
            "hpo study best --study cluster4 -n 3 --json",
        ),
        (
            "trials",
            cmd_study_trials,
            "every trial with state, eval_loss and parameters",
            "hpo study trials --study cluster4",
        ),
    ):
        p = _add(study_sub, name, func, helptext, example, [common])
        p.add_argument("--study", required=True, help="study name")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "best":
            p.add_argument("-n", type=int, default=5, help="how many (5)")

    p = _add(
        sub,
        "worker",
        cmd_worker,
        "run trials of a study until its budget is spent (one per GPU)",
        "CUDA_VISIBLE_DEVICES=0 hpo worker --study cluster4 --storage "
        "postgresql+psycopg://hpo@db/hpo",
        [common],
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--worker-index", type=int, default=0, help="offsets the sampler seed (0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--max-trials", type=int, default=None, help="stop after this many here")
    p.add_argument(
        "--grace-period",
        type=int,
        default=60,
        help="seconds without heartbeat before a trial is failed and retried (60)",
    )

    p = _add(
        sub,
        "launch",
        cmd_launch,
        "start N workers on this machine and wait for them",
        "hpo launch --study cluster4 --gpus 0,1,2,3",
        [common],
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--workers", type=int, default=None, help="number of CPU workers")
    p.add_argument("--gpus", default=None, help="comma-separated GPU ids, one worker each")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per worker")

    p = _add(
        sub,
        "dashboard",
        cmd_dashboard,
        "serve optuna-dashboard on the storage",
        "hpo dashboard --storage sqlite:///hpo.db --port 8080",
        [common],
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (127.0.0.1; the dashboard has no authentication)",
    )
    p.add_argument("--port", type=int, default=8080, help="port (8080)")

    p = _add(
        sub,
        "evaluate",
        cmd_evaluate,
        "promote the best trial and evaluate it and the base model on the test split",
        "hpo evaluate --study cluster4",
        [common],
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--batch-size", type=int, default=32, help="generation batch size (32)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="reply length limit (40)")

    p = _add(
        sub,
        "demo",
        cmd_demo,
        "the whole flow on the embedded default: data, clusters, study with 2 workers, "
        "evaluation. Files go to demo_run/ (or --output-root / HPO_OUTPUT_ROOT); the database "
        "is OUTPUT_ROOT/hpo.db unless --storage or HPO_STORAGE names another. A second run "
        "resumes: finished trials and evaluations are reused.",
        "hpo demo --output-root demo_run --n-trials 12",
        [common],
    )
    p.set_defaults(output_root=Path(os.environ.get("HPO_OUTPUT_ROOT", "demo_run")))
    p.add_argument("--personas", type=int, default=200, help="personas (200)")
    p.add_argument("--examples", type=int, default=40, help="examples per persona (40)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--n-trials", type=int, default=12, help="trials in the study (12)")
    p.add_argument(
        "--config", type=Path, default=None, help="study config (default: the packaged demo.toml)"
    )
    return parser


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from storage import InvalidNameError
    from trainers.data import DatasetError

    return (DatasetError, InvalidNameError, ValueError, KeyError, LookupError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        # Library notices that say nothing to a user of this tool (API deprecations inside
        # transformers, Optuna features marked experimental that we rely on on purpose).
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        warnings.filterwarnings("ignore", message=r".*(is experimental|experimental feature)")
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "worker" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hpo: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, _bad_input_errors()) else 1


if __name__ == "__main__":
    sys.exit(main())
