"""``hpo demo``: the whole flow on the embedded default, from generated personas to an
evaluated best trial. Each step is a library call that the other subcommands also make."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markdown import Markdown

import storage
from evaluators.config import EvalConfig
from evaluators.trials.records import PromotionReport
from hpo.artifacts import output_layout
from hpo.cli import display
from hpo.datasets import cluster_dataset, import_dataset, load_study_cluster
from hpo.evaluation.service import DEFAULT_TOP_K, evaluate_study
from hpo.evaluation.study_report import write_report
from hpo.personas.moe import MoeSettings, run_moe
from hpo.personas.training import train_persona_adapters
from hpo.study.config import load_config, packaged_config
from hpo.study.creation import create_study
from hpo.study.queries import study_status
from hpo.workers.launch import start_workers, wait_for_workers

if TYPE_CHECKING:
    from trainers.tiny import Plant

DEMO_DATASET = "demo"
NEGATIVE_SUFFIX = "-negative"
"""The negative control's dataset and study names end with this, so that both demos can share
one output root and database (``demo`` and ``demo-negative``)."""

DEMO_PLANT_STRENGTH = 0.5
"""Share of the largest archetype's replies that the demo plants (docs/evaluation.md): well
above the level where the planted topic becomes the group's most frequent one (about 0.2), so
an adapter that learned it says it, and well below 1, so the group's own traits still count."""


@dataclass
class DemoOptions:
    """Scale of the demo, the single home of its numbers (``hpo demo`` and ``hpo data
    generate`` derive their flags from these fields; defaults: the original plan's 200
    personas x 40 examples)."""

    output_root: Path = Path("demo_run")
    """Folder of the demo's data, models, logs, results and SQLite database."""
    storage_url: str | None = None
    """Storage URL; None: a SQLite file in the output root."""
    personas: int = 200
    """Personas in the generated dataset."""
    examples: int = 40
    """Examples per persona."""
    seed: int = 0
    """Seed of the generated dataset."""
    workers: int = 2
    """Worker processes that run the study's trials."""
    n_trials: int = 12
    """Trials in the study (complete + pruned)."""
    config: Path | None = None
    """Study config (TOML); None: the packaged demo.toml."""
    persona_epochs: int = 1
    """Epochs of each per-persona adapter (scaled down from the promoted trial's to fit a CPU)."""
    persona_max_train: int = 10
    """Train examples per persona for its own adapter."""
    moe_k: int = 5
    """Personas merged into each persona's MoE adapter (top-k by persona-text similarity)."""
    plant_strength: float = DEMO_PLANT_STRENGTH
    """Share of replies about a planted topic that only fine-tuning can learn: one topic in the
    largest archetype's (the tuned cluster), another in the others' (docs/evaluation.md); 0
    plants nothing."""
    negative_control: bool = False
    """Plant nothing, whatever plant_strength says: the same sizes and seeds, no effect to find."""

    def __post_init__(self) -> None:
        from trainers.tiny import archetype_sizes

        counts = ("personas", "examples", "workers", "n_trials", "persona_epochs")
        for name in (*counts, "persona_max_train", "moe_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name}={value!r}: expected an integer >= 1")
        try:
            archetype_sizes(self.personas)  # the generator's own minimum
        except ValueError as exc:
            raise ValueError(f"invalid personas={self.personas}: {exc}") from exc
        strength = self.plant_strength
        if isinstance(strength, bool) or not isinstance(strength, int | float):
            raise ValueError(f"invalid plant_strength={strength!r}: expected a number in [0, 1]")
        if not 0 <= strength <= 1:
            raise ValueError(f"invalid plant_strength={strength!r}: expected a number in [0, 1]")

    @property
    def plant(self) -> Plant:
        """What the generated dataset plants: nothing for the negative control."""
        from trainers.tiny import Plant

        return Plant(0.0 if self.negative_control else self.plant_strength)

    @property
    def dataset(self) -> str:
        """The generated dataset's name: another for the negative control."""
        return DEMO_DATASET + (NEGATIVE_SUFFIX if self.negative_control else "")


@dataclass
class DemoResult:
    """What the demo produced, for the final summary and for tests."""

    storage_url: str
    study_name: str
    report: PromotionReport
    decision: dict[str, Any] = field(default_factory=dict)
    """The report's decision (:class:`evaluators.report.decision.Decision` as a dict)."""
    files: dict[str, Path | str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoShortcuts:
    """How a test or a benchmark runs the demo smaller and in one process; ``hpo demo`` uses
    the defaults, which are the demo's own."""

    in_process: bool = False
    """Run the study's trials in this process (one worker, ``run_worker``), not in worker
    processes: no process start, the model loaded once."""
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    """How every evaluation generates replies (a shorter max_new_tokens is quicker)."""
    top_k: int = DEFAULT_TOP_K
    """Trials the evaluator evaluates, best eval_loss first."""
    moe: bool = True
    """Train the per-persona adapters and evaluate the MoE merge (step 6)."""
    png: bool = True
    """Render the report's PNG (needs Chromium)."""


def run_demo(
    options: DemoOptions,
    console: Console | None = None,
    shortcuts: DemoShortcuts = DemoShortcuts(),
) -> DemoResult:
    """Run every step of the service once, printing as it goes."""
    from trainers.tiny import (
        ensure_tiny_model,
        planted_personas,
        tiny_model_build,
        write_demo_dataset,
    )

    console = console or Console()
    root = options.output_root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    url = options.storage_url or f"sqlite:///{root / 'hpo.db'}"
    layout = output_layout(root)
    config = load_config(options.config or packaged_config("demo"))
    dataset, plant = options.dataset, options.plant
    study_name = config.study.name
    if options.negative_control:  # beside the planted demo's study, not over it
        study_name = study_name.replace(DEMO_DATASET, dataset, 1)
        study_name = study_name if study_name.startswith(dataset) else f"{dataset}-{study_name}"
    config = dataclasses.replace(
        config,
        study=dataclasses.replace(
            config.study, name=study_name, n_trials=options.n_trials, dataset=dataset
        ),
    )
    timer: dict[str, float] = {}
    files: dict[str, Path | str] = {}

    def step(name: str) -> Any:
        console.rule(f"[bold]{name}")
        timer[name] = time.monotonic()
        return name

    def done(name: str) -> None:
        timer[name] = time.monotonic() - timer[name]
        console.print(f"[dim]{name}: {timer[name]:.1f} s")

    name = step("1. dataset")
    data_path = layout.data_dir() / f"{dataset}_personas.jsonl"
    write_demo_dataset(
        data_path,
        n_personas=options.personas,
        examples_per_persona=options.examples,
        seed=options.seed,
        plant=plant,
    )
    engine = storage.open_storage(url)
    imported = import_dataset(engine, data_path, name=dataset)
    console.print(
        f"generated {imported.n_personas} personas, {imported.n_examples} examples "
        f"-> {data_path}; imported as dataset {imported.name!r} into {url}"
    )
    console.print(f"planted: {plant.describe()} (docs/evaluation.md)")
    files["dataset"] = data_path
    done(name)

    name = step("2. clusters")
    section = config.study
    _, clustering = cluster_dataset(
        engine,
        dataset,
        k=section.k,
        seed=section.clustering_seed,
        embedding_model=section.embedding_model,
    )
    display.print_table(
        display.cluster_table(
            clustering.clusters,
            clustering.silhouette,
            f"KMeans k={section.k} on {section.embedding_model} persona embeddings",
        ),
        console,
    )
    group = set(planted_personas(options.personas, seed=options.seed, plant=plant))
    tuned = {p.key for p in load_study_cluster(engine, section).personas}
    console.print(
        f"cluster {section.cluster_id} (tuned): {len(tuned)} personas, {len(tuned & group)} of "
        f"them of the {len(group)} {plant.group} personas"
        + (" that share the planted trait" if plant.strength else "")
    )
    done(name)

    name = step("3. base model")
    model_dir = ensure_tiny_model(config.model) if config.model.base_model == "tiny" else None
    console.print(
        f"base model: {config.model.base_model}"
        + (f" (cached at {model_dir})" if model_dir else "")
    )
    if model_dir:
        files["base model"] = model_dir
        build = tiny_model_build(model_dir)
        # the build is deterministic per machine, not across CPUs: the sha256 names the model
        console.print(
            f"tiny model recipe v{build['recipe']}, seed {build['seed']}, "
            f"{build['parameters']:,} parameters, pretraining loss {build['final_loss']:.3f}, "
            f"weights sha256 {build['weights_sha256']}"
        )
    done(name)

    name = step("4. study")
    create_study(config, url)
    console.print(
        f"study {section.name!r}: cluster {section.cluster_id}, "
        f"{section.n_trials} trials, seeds enqueued first, "
        f"{options.workers} workers (logs in {layout.root / 'logs'})"
    )
    if shortcuts.in_process:
        from hpo.workers.worker import run_worker

        run_worker(url, section.name, output_root=root, worker_index=0)
    else:
        workers = start_workers(url, section.name, n_workers=options.workers, output_root=root)
        with display.study_progress(url, section.name, console) as poll:
            codes = wait_for_workers(workers, poll=poll)
        if any(codes):
            logs = ", ".join(str(w.log_path) for w, c in zip(workers, codes, strict=True) if c)
            raise RuntimeError(f"a worker failed (exit codes {codes}); see {logs}")
    status = study_status(url, section.name)
    display.print_table(display.status_table(status), console)
    done(name)

    name = step("5. evaluation")
    report, results_path = evaluate_study(
        url,
        section.name,
        output_root=root,
        eval_config=shortcuts.eval_config,
        top_k=shortcuts.top_k,
    )
    display.print_table(display.similarity_table(report), console)
    files["promoted adapter"] = report.promoted_dir
    files["trial adapters"] = layout.root / "models" / "trials" / section.name
    files["results"] = results_path
    files["logs"] = layout.root / "logs"
    files["database"] = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite") else url
    done(name)

    if shortcuts.moe:
        name = step("6. per-persona adapters and MoE")
        summary = train_persona_adapters(
            url,
            section.name,
            output_root=root,
            overrides={
                "epochs": options.persona_epochs,
                "max_train_per_persona": options.persona_max_train,
            },
        )
        console.print(
            f"per-persona adapters ({summary.source}): {summary.n_personas} personas, "
            f"{len(summary.trained)} trained, {summary.already_done + len(summary.reused)} "
            f"reused, {len(summary.failed)} failed"
        )
        _, moe_path = run_moe(
            url,
            section.name,
            output_root=root,
            settings=MoeSettings(k=options.moe_k),
            eval_config=shortcuts.eval_config,
        )
        files["per-persona adapters"] = layout.root / "models" / section.name / "personas"
        files["MoE results"] = moe_path
        done(name)

    name = step("7. report and decision")
    report_data, written = write_report(
        url, section.name, output_root=root, eval_config=shortcuts.eval_config, png=shortcuts.png
    )
    summary_file = written.get("summary")
    if summary_file is not None:
        text = Path(summary_file).read_text(encoding="utf-8")
        if console.is_terminal:
            console.print(Markdown(text))
        else:  # piped: the markdown itself, so that no cell is cut to the width
            console.out(text, highlight=False)
    for kind, path in written.items():
        files[f"report {kind}"] = path
    decision = report_data["decision"]
    console.print(_control_line(plant.strength, decision.get("main_result"), section.cluster_id))
    done(name)

    console.rule("[bold]files")
    for what, where in files.items():
        console.print(f"{what:>17}: {where}")
    console.print(
        f"\nwatch it: hpo dashboard --storage {url}\n"
        f"query it: hpo study best --storage {url} --study {section.name}"
    )
    return DemoResult(url, section.name, report, decision, files, timer)


def _control_line(strength: float, main_result: str | None, cluster_id: int) -> str:
    """What the decision says about the planted trait: found, missed or invented."""
    from evaluators.report.rows import label

    named = "no main result"
    if main_result is not None:
        named = f"{label(main_result, cluster_id)} as the main result"
    if not strength:
        verdict = "as it should" if main_result is None else "a false positive"
        return f"negative control (nothing planted): the decision names {named}, {verdict}"
    verdict = "missed" if main_result is None else "found"
    return f"planted trait (strength {strength:g}): the decision names {named}: {verdict}"
