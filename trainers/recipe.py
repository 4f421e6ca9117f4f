"""The LoRA training recipe, top to bottom: tokenize, wrap with LoRA, train, evaluate, save.

``trainers`` knows nothing of Optuna: the caller passes a plain ``report(step, eval_loss)``
callback that returns True to stop early (a pruned trial, for the hpo package).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.base_model import BaseModel
from trainers.config import TrainConfig
from trainers.prompt import build_prompt, reply_target

ReportFn = Callable[[int, float], bool]
"""``report(step, eval_loss) -> stop``: step counts evaluations (1, 2, ...) so that runs with
other batch sizes or epochs compare at the same fraction of an epoch."""

ADAPTER_CONFIG_FILE = "train_config.json"


class NonFiniteLossError(RuntimeError):
    """The training or evaluation loss became NaN or infinite."""


@dataclass(frozen=True)
class PromptPair:
    """One training example: the prompt and the reply the model should learn."""

    prompt: str
    target: str


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

    @property
    def final_eval_loss(self) -> float:
        """The eval_loss of the last evaluation (the saved adapter's)."""
        return self.eval_losses[-1][1]


def prompt_pairs(personas: Sequence[Any], split: str, cap: int | None = None) -> list[PromptPair]:
    """Build prompt/target pairs from personas' examples of one split.

    Args:
        personas: Objects with ``text`` and ``examples`` (each with ``context``, ``reply``,
            ``split``), as loaded by :mod:`trainers.data` or from storage.
        split: ``"train"``, ``"val"`` or ``"test"``.
        cap: At most this many examples per persona (the first ones, in file order).
    """
    pairs = []
    for persona in personas:
        chosen = [ex for ex in persona.examples if ex.split == split]
        for ex in chosen[:cap] if cap else chosen:
            pairs.append(PromptPair(build_prompt(persona.text, ex.context), reply_target(ex.reply)))
    return pairs


def tokenize_pairs(tokenizer: Any, pairs: Sequence[PromptPair], max_length: int) -> list[dict]:
    """Tokenize pairs for causal-LM training: the loss covers the reply and EOS only.

    Prompts too long for ``max_length`` are cut from the left (the oldest context goes first).
    """
    rows = []
    for pair in pairs:
        prompt_ids = tokenizer(pair.prompt)["input_ids"]
        target_ids = tokenizer(pair.target, add_special_tokens=False)["input_ids"]
        target_ids = [*target_ids[: max_length // 2], tokenizer.eos_token_id]
        prompt_ids = prompt_ids[-(max_length - len(target_ids)) :]
        rows.append(
            {
                "input_ids": prompt_ids + target_ids,
                "labels": [-100] * len(prompt_ids) + target_ids,
            }
        )
    return rows


@dataclass
class PadCollator:
    """Right-pads a batch; padded labels are ignored by the loss."""

    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, mask = [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(r["input_ids"] + [self.pad_token_id] * pad)
            labels.append(r["labels"] + [-100] * pad)
            mask.append([1] * len(r["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def lora_config(config: TrainConfig) -> Any:
    """The peft LoraConfig for a training config."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.lora_rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules) if config.target_modules else None,
    )


@dataclass
class _ReportState:
    report: ReportFn | None
    log_file: Any
    losses: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False
    non_finite: str | None = None


def _make_callback(shared: _ReportState) -> Any:
    from transformers import TrainerCallback

    class ReportCallback(TrainerCallback):  # type: ignore[misc]
        """Hands every eval_loss to ``report`` and stops on request or on a non-finite loss."""

        def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            logs = kw.get("logs") or {}
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                shared.non_finite = f"train loss {loss} at step {state.global_step}"
                control.should_training_stop = True
            if shared.log_file and logs:
                fields = " ".join(
                    f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()
                )
                shared.log_file.write(f"step={state.global_step} {fields}\n")
                shared.log_file.flush()

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            loss = float((kw.get("metrics") or {}).get("eval_loss", float("nan")))
            step = len(shared.losses) + 1
            if not math.isfinite(loss):
                shared.non_finite = f"eval_loss {loss} at evaluation {step}"
                control.should_training_stop = True
                return
            shared.losses.append((step, loss))
            if shared.report is not None and shared.report(step, loss):
                shared.stopped_early = True
                control.should_training_stop = True

    return ReportCallback()


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
) -> TrainResult:
    """Train one LoRA adapter on the base model, then remove it from the base model again.

    Args:
        base: The loaded base model; it is left unchanged (the adapter is unloaded after).
        config: Hyperparameters.
        train: Training pairs. val: Validation pairs, for the intermediate eval_loss.
        report: Called after every evaluation with (step, eval_loss); True stops the run.
        save_dir: Where ``save_pretrained`` writes the adapter when the run completes.
        log_path: A log file that gets one ``eval_loss=`` line per evaluation.
        progress: Show the Trainer's progress bar (off in workers, whose output is a log).

    Raises:
        ValueError: If there is no training or validation data.
        NonFiniteLossError: If a loss turns NaN or infinite.
    """
    import torch
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    if not train or not val:
        raise ValueError(f"need training and validation examples, got {len(train)} and {len(val)}")
    started = time.monotonic()
    max_len = config.data.max_seq_length
    train_rows = tokenize_pairs(base.tokenizer, train, max_len)
    val_rows = tokenize_pairs(base.tokenizer, val, max_len)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    eval_steps = max(1, steps_per_epoch // config.evals_per_epoch)

    torch.manual_seed(config.seed)
    use_cache = getattr(base.model.config, "use_cache", None)  # the Trainer turns it off
    model = get_peft_model(base.model, lora_config(config))
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("a", encoding="utf-8")
        log_file.write(f"config {json.dumps(config.to_dict(), sort_keys=True)}\n")
    state = _ReportState(report=report, log_file=log_file)
    try:
        with tempfile.TemporaryDirectory(prefix="hpo-trainer-") as scratch:
            args = TrainingArguments(
                output_dir=scratch,
                num_train_epochs=config.epochs,
                per_device_train_batch_size=config.batch_size,
                per_device_eval_batch_size=max(8, config.batch_size),
                learning_rate=config.learning_rate,
                lr_scheduler_type="linear",
                weight_decay=config.weight_decay,
                max_grad_norm=config.max_grad_norm,
                eval_strategy="steps",
                eval_steps=eval_steps,
                logging_steps=eval_steps,
                logging_nan_inf_filter=False,
                save_strategy="no",
                report_to="none",
                seed=config.seed,
                data_seed=config.seed,
                use_cpu=base.device == "cpu",
                bf16=base.device == "cuda" and torch.cuda.is_bf16_supported(),
                dataloader_num_workers=0,
                remove_unused_columns=False,
                disable_tqdm=not progress,
            )
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=train_rows,  # type: ignore[arg-type]
                eval_dataset=val_rows,  # type: ignore[arg-type]
                data_collator=PadCollator(base.tokenizer.pad_token_id),
                callbacks=[_make_callback(state)],
            )
            trainer.remove_callback(PrinterCallback)  # our log file gets every line instead
            output = trainer.train()
            if state.non_finite:
                raise NonFiniteLossError(f"loss is not finite: {state.non_finite}")
            last_logged_step = state.losses[-1][0] * eval_steps if state.losses else 0
            if not state.stopped_early and output.global_step != last_logged_step:
                trainer.evaluate()  # the final weights get their own eval_loss
                if state.non_finite:
                    raise NonFiniteLossError(f"loss is not finite: {state.non_finite}")
            if save_dir is not None and not state.stopped_early:
                model.save_pretrained(str(save_dir))
                (Path(save_dir) / ADAPTER_CONFIG_FILE).write_text(
                    json.dumps(config.to_dict(), indent=2, sort_keys=True)
                )
        return TrainResult(
            stopped_early=state.stopped_early,
            eval_losses=tuple(state.losses),
            train_steps=output.global_step,
            seconds=time.monotonic() - started,
            adapter_dir=None if state.stopped_early else save_dir,
        )
    finally:
        if log_file is not None:
            log_file.close()
        base.model = model.unload()
        if use_cache is not None:
            base.model.config.use_cache = use_cache
