"""The LoRA training recipe, top to bottom: tokenize, wrap with LoRA, train, evaluate, save.

The parts live next door: :mod:`trainers.batching` turns personas into padded batches,
:mod:`trainers.report` hands every eval_loss to the caller's ``report`` callback (``trainers``
knows nothing of Optuna), and the transformers ``Trainer`` runs the loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.base_model import BaseModel
from trainers.batching import (
    PromptPair,
    TokenRows,
    check_packing,
    collator,
    padded_right,
    seeded_trainer,
    tokenize_pairs,
)
from trainers.config import TINY_MODEL, TrainConfig
from trainers.devices import one_device_arguments, release_memory
from trainers.memory import MicroBatches, report_once
from trainers.prompt import ContextLoss
from trainers.report import ReportFn, RunLog, log_file, quiet_progress_callback, report_callback
from trainers.targets import resolve_targets

log = logging.getLogger(__name__)

TRAIN_CONFIG_FILE = "train_config.json"
"""Our file next to peft's: the whole :class:`TrainConfig` the adapter was trained with."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    stopped_early: bool
    """True when ``report`` asked to stop (the run is not complete and nothing was saved)."""
    eval_losses: tuple[tuple[int, float], ...]
    """Every (step, eval_loss) reported, in order."""
    train_steps: int
    seconds: float
    adapter_dir: Path | None = None
    context_loss: ContextLoss | None = None
    """The training examples whose prompt lost context turns (or persona) to the length limit."""
    micro_batch_size: int | None = None
    """Examples per forward pass of the attempt that finished (the batch, unless memory ran
    out: see :mod:`trainers.memory`); None where no recipe ran."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step: ``batch_size / micro_batch_size``."""
    oom_retries: int = 0
    """Attempts started again at a smaller micro-batch after running out of memory."""

    @property
    def final_eval_loss(self) -> float:
        """The eval_loss of the last evaluation (the saved adapter's)."""
        return self.eval_losses[-1][1]


def lora_config(config: TrainConfig, model: Any = None) -> Any:
    """The peft LoraConfig for a training config.

    With ``model``, the target modules are resolved for it (:func:`trainers.targets.
    resolve_targets`: the config's, the ``lora_targets`` preset's: peft's default or the
    attention projections, or every linear projection), logged,
    and written into the config, so that ``adapter_config.json`` names them. Without it,
    the config's ``target_modules`` (or None: peft's default) are passed on as they are.

    Raises:
        ValueError: If the model has no module to adapt, or the configured ones are not in it.
    """
    from peft import LoraConfig, TaskType

    targets: Any = list(config.target_modules) if config.target_modules else None
    if model is not None:
        chosen = resolve_targets(model, config.target_modules, config.lora_targets)
        log.info("LoRA targets of %s: %s", model.config.model_type, chosen)
        targets = chosen.modules if isinstance(chosen.modules, str) else list(chosen.modules)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.lora_rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
    )


def training_arguments(
    config: TrainConfig,
    output_dir: str,
    eval_steps: int,
    device: str,
    *,
    progress: bool,
    logging_steps: int | None = None,
    precision: str = "fp32",
    gradient_checkpointing: bool = False,
    micro_batch_size: int | None = None,
) -> Any:
    """The transformers ``TrainingArguments`` of a run on one device (never ``DataParallel``:
    a step is ``batch_size`` examples): evaluate every ``eval_steps`` and log every
    ``logging_steps`` (default the same), save nothing (the recipe saves the adapter itself),
    seed everything from the config, compute in ``precision`` (``"bf16"``, ``"fp16"``
    autocast over fp32 weights, or ``"fp32"``). A ``micro_batch_size`` (a divisor of the
    batch) splits each step into micro-batches with gradient accumulation; evaluation takes
    ``max(8, micro_batch_size)`` rows at a time."""
    micro = micro_batch_size or config.batch_size
    return one_device_arguments(
        device,
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=config.batch_size // micro,
        per_device_eval_batch_size=max(8, micro),
        # rows of similar length share a batch; an epoch still sees every row once
        train_sampling_strategy="group_by_length" if config.data.group_by_length else "random",
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        eval_strategy="steps",
        eval_steps=eval_steps,
        logging_steps=logging_steps or eval_steps,
        logging_nan_inf_filter=False,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=gradient_checkpointing,
        # peft freezes the embeddings: reentrant checkpointing would need inputs with grad
        activation_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=not progress,
    )


def portable_base_name(base: BaseModel) -> str:
    """The base model as an adapter names it (``base_model_name_or_path``): what the config
    names (a Hub id, or the user's own path as written), or for the tiny model the name of its
    built folder. peft would write the folder the weights were loaded from, a path on this
    machine (``/root/.cache/persona-hpo/...``), so the same adapter trained on two machines
    would differ in its bytes and the MoE merge would refuse to merge them."""
    if base.name == TINY_MODEL:
        return Path(str(base.model.name_or_path)).name
    return base.name


def save_adapter(model: Any, config: TrainConfig, save_dir: Path) -> None:
    """Write the adapter with peft's ``save_pretrained`` and our :data:`TRAIN_CONFIG_FILE`.

    Our LoRA never adapts the embeddings (:mod:`trainers.targets` leaves the output head out
    and peft freezes the input embeddings), so peft's "auto" check of whether they must be
    saved is skipped: it would look for the base model's ``config.json`` under the portable
    name (:func:`portable_base_name`), a folder name or a Hub id offline, and warn once per
    adapter that it found none."""
    model.save_pretrained(str(save_dir), save_embedding_layers=False)
    (Path(save_dir) / TRAIN_CONFIG_FILE).write_text(
        json.dumps(config.to_dict(), indent=2, sort_keys=True)
    )


def train_lora(
    base: BaseModel,
    config: TrainConfig,
    train: Sequence[PromptPair],
    val: Sequence[PromptPair],
    *,
    report: ReportFn | None = None,
    save_dir: Path | None = None,
    log_path: Path | None = None,
    progress: bool = False,
    final_eval_only: bool = False,
) -> TrainResult:
    """Train one LoRA adapter on the base model, then remove it from the base model again.

    Args:
        base: The loaded base model; it is left unchanged (the adapter is unloaded after).
        config: Hyperparameters.
        train: Training pairs. val: Validation pairs, for the intermediate eval_loss.
        report: Called after every evaluation with (step, eval_loss); True stops the run.
        save_dir: Where ``save_pretrained`` writes the adapter when the run completes.
        log_path: A log file that gets the config, then one line per evaluation and log step.
        progress: Show the Trainer's progress bar (off in workers, whose output is a log).
        final_eval_only: Evaluate once, after the last step, instead of ``evals_per_epoch``
            times an epoch: for runs that nobody stops early (baselines, per-persona
            adapters). Evaluating changes no weight: without dropout the adapter is the
            same; with ``lora_dropout`` it differs only in dropout's random draws (each
            evaluation's data loader takes one number from torch's generator). The log
            still gets a training-loss line at the usual interval.

    Out of memory, the run starts again from scratch at a smaller micro-batch with the same
    effective batch (:class:`trainers.memory.MicroBatches`; the result records the micro-batch,
    the accumulation and the retries); ``report`` gets each step once over the attempts.

    Raises:
        ValueError: If there is no training or validation data.
        NonFiniteLossError: If a loss turns NaN or infinite.
        OutOfMemory: If even micro-batch 1 ran out of memory.
    """
    if not train or not val:
        raise ValueError(f"need training and validation examples, got {len(train)} and {len(val)}")
    started = time.monotonic()

    # Data: token rows; an evaluation every 1/evals_per_epoch of an epoch.
    length = config.data.max_seq_length
    train_tokens = tokenize_pairs(base.tokenizer, train, length, chat=base.chat)
    val_tokens = tokenize_pairs(base.tokenizer, val, length, chat=base.chat)
    steps_per_epoch = math.ceil(len(train_tokens.rows) / config.batch_size)
    log_steps = max(1, steps_per_epoch // config.evals_per_epoch)
    eval_steps = steps_per_epoch * config.epochs if final_eval_only else log_steps

    micro_batches = MicroBatches(config.batch_size)
    once = report_once(report)
    result = micro_batches.run(
        lambda micro: _attempt(
            base,
            config,
            train_tokens,
            val_tokens,
            (eval_steps, log_steps, micro),
            report=once,
            save_dir=save_dir,
            log_path=log_path,
            progress=progress,
        ),
        what=f"training at batch {config.batch_size}",
    )
    return dataclasses.replace(
        result,
        seconds=time.monotonic() - started,
        micro_batch_size=micro_batches.micro_batch_size,
        gradient_accumulation_steps=micro_batches.gradient_accumulation_steps,
        oom_retries=micro_batches.retries,
    )


def _attempt(
    base: BaseModel,
    config: TrainConfig,
    train_tokens: TokenRows,
    val_tokens: TokenRows,
    steps: tuple[int, int, int],
    *,
    report: ReportFn | None,
    save_dir: Path | None,
    log_path: Path | None,
    progress: bool,
) -> TrainResult:
    """One attempt of :func:`train_lora` at one micro-batch, from a fresh LoRA; ``steps`` are
    the evaluation interval, the logging interval and the micro-batch size."""
    import torch
    from peft import get_peft_model
    from transformers import PrinterCallback, ProgressCallback

    eval_steps, log_steps, micro = steps
    started = time.monotonic()
    train_rows, val_rows = train_tokens.rows, val_tokens.rows

    # Model: LoRA layers on the shared base model, seeded.
    torch.manual_seed(config.seed)
    use_cache = getattr(base.model.config, "use_cache", None)  # the Trainer turns it off
    if config.data.packing:
        check_packing(base.model)
    model = get_peft_model(base.model, lora_config(config, base.model))

    run = RunLog(report=report)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="hpo-trainer-") as scratch,
            log_file(log_path, config.to_dict()) as run.log_file,
            padded_right(base.tokenizer),
        ):
            _log_context_loss(run, train=train_tokens.context_loss, val=val_tokens.context_loss)
            if micro != config.batch_size and run.log_file is not None:
                run.log_file.write(
                    f"micro_batch_size={micro} gradient_accumulation_steps="
                    f"{config.batch_size // micro} after running out of memory\n"
                )
            # Train, reporting every evaluation.
            trainer = seeded_trainer()(
                model=model,
                args=training_arguments(
                    config,
                    scratch,
                    eval_steps,
                    base.device,
                    progress=progress,
                    logging_steps=log_steps,
                    precision=base.precision,
                    gradient_checkpointing=base.gradient_checkpointing,
                    micro_batch_size=micro,
                ),
                train_dataset=train_rows,  # type: ignore[arg-type]
                eval_dataset=val_rows,  # type: ignore[arg-type]
                data_collator=collator(base.tokenizer, config.data),
                callbacks=[report_callback(run)],
            )
            trainer.remove_callback(PrinterCallback)  # our log file gets every line instead
            if progress:  # the bars, without every log line printed under them
                trainer.remove_callback(ProgressCallback)
                trainer.add_callback(quiet_progress_callback())
            output = trainer.train()
            run.check_finite()
            # The Trainer evaluates the last step itself; should it ever not, the final
            # weights still get their own eval_loss, so final_eval_loss is the saved adapter's.
            if not run.stopped_early and run.last_eval_step != output.global_step:
                trainer.evaluate()
                run.check_finite()

            # Save, unless the caller stopped the run.
            if save_dir is not None and not run.stopped_early:
                for adapter_config in model.peft_config.values():
                    adapter_config.base_model_name_or_path = portable_base_name(base)
                save_adapter(model, config, save_dir)
        return TrainResult(
            stopped_early=run.stopped_early,
            eval_losses=tuple(run.losses),
            train_steps=output.global_step,
            seconds=time.monotonic() - started,
            adapter_dir=None if run.stopped_early else save_dir,
            context_loss=train_tokens.context_loss,
        )
    finally:
        base.model = model.unload()
        if use_cache is not None:
            base.model.config.use_cache = use_cache
        if base.gradient_checkpointing:
            base.model.activation_checkpointing_disable()
            # the Trainer's enable put a hook on the input embeddings; it would stay, one more
            # after every run (transformers' disable leaves it)
            base.model.disable_input_require_grads()
        model = trainer = None  # type: ignore[assignment]  # LoRA, optimizer, activations
        release_memory(base.device)


def _log_context_loss(run: RunLog, **splits: ContextLoss) -> None:
    """Say how many examples of each split lost context, in the run's log and the logger."""
    for split, loss in splits.items():
        if run.log_file is not None:
            run.log_file.write(f"context {split} {json.dumps(loss.to_dict(), sort_keys=True)}\n")
        if loss.lost_context:
            log.warning("%s: %s", split, loss)
