"""The LoRA recipe: reports, saving, early stop, a clean base model, and failure modes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_small_dataset
from trainers.batching import PromptPair, prompt_pairs
from trainers.config import ModelConfig, TrainConfig
from trainers.data import SplitConfig, load_jsonl
from trainers.recipe import (
    TRAIN_CONFIG_FILE,
    TrainResult,
    lora_config,
    portable_base_name,
    save_adapter,
    train_lora,
)
from trainers.report import NonFiniteLossError

# 8 personas x 3 train examples = 24 pairs; batch 4 gives 6 steps an epoch, and with
# evals_per_epoch=2 an evaluation every 3 steps (so the count of evaluations is exact).
N_TRAIN_PERSONAS = 8
TRAIN_CAP = 3
BATCH = 4
EVALS_PER_EPOCH = 2
EPOCHS = 2


def _lora_module_names(model: Any) -> list[str]:
    return [name for name, _ in model.named_modules() if "lora_" in name]


def _snapshot(model: Any) -> dict[str, Any]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _assert_clean(model: Any, snapshot: dict[str, Any]) -> None:
    import torch

    assert _lora_module_names(model) == []
    assert not hasattr(model, "peft_config")
    state = model.state_dict()
    assert set(state) == set(snapshot)
    changed = [name for name in snapshot if not torch.equal(state[name], snapshot[name])]
    assert changed == [], f"base model parameters changed: {changed[:5]}"


@dataclass(frozen=True)
class Pairs:
    train: list[PromptPair]
    val: list[PromptPair]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    path = write_small_dataset(
        tmp_path_factory.mktemp("recipe-data") / "small.jsonl", n_personas=10, examples=16
    )
    dataset = load_jsonl(path, split=SplitConfig(n_test=4))
    personas = dataset.personas[:N_TRAIN_PERSONAS]
    train = prompt_pairs(personas, "train", TRAIN_CAP)
    val = prompt_pairs(personas[:4], "val", 1)
    assert len(train) == N_TRAIN_PERSONAS * TRAIN_CAP
    assert len(val) == 4
    return Pairs(train, val)


def _config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "learning_rate": 5e-3,
        "evals_per_epoch": EVALS_PER_EPOCH,
    }
    values.update(overrides)
    return TrainConfig(**values)


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    reports: list[tuple[int, float]]
    adapter_dir: Path
    snapshot: dict[str, Any]
    use_cache_before: Any


@pytest.fixture(scope="module")
def trained(tiny_base: Any, pairs: Pairs, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One complete 2-epoch run, shared by the tests that inspect its outputs."""
    snapshot = _snapshot(tiny_base.model)
    use_cache = tiny_base.model.config.use_cache
    reports: list[tuple[int, float]] = []
    adapter_dir = tmp_path_factory.mktemp("recipe-adapter") / "adapter"

    def report(step: int, loss: float) -> bool:
        reports.append((step, loss))
        return False

    result = train_lora(
        tiny_base, _config(), pairs.train, pairs.val, report=report, save_dir=adapter_dir
    )
    yield Trained(result, reports, adapter_dir, snapshot, use_cache)
    # Leave the session model as it was for other modules, whatever the test found.
    tiny_base.model.config.use_cache = use_cache


def test_reports_consecutive_finite_steps(trained: Trained) -> None:
    steps = [step for step, _ in trained.reports]
    assert steps == list(range(1, len(steps) + 1))
    assert all(math.isfinite(loss) for _, loss in trained.reports)
    assert len(steps) == EPOCHS * EVALS_PER_EPOCH
    assert trained.result.eval_losses == tuple(trained.reports)
    assert trained.result.final_eval_loss == trained.reports[-1][1]
    assert not trained.result.stopped_early
    assert trained.result.train_steps == EPOCHS * N_TRAIN_PERSONAS * TRAIN_CAP // BATCH


def test_saved_adapter_files(trained: Trained) -> None:
    import json

    from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

    assert trained.result.adapter_dir == trained.adapter_dir
    names = {p.name for p in trained.adapter_dir.iterdir()}
    assert CONFIG_NAME in names
    assert SAFETENSORS_WEIGHTS_NAME in names
    assert TRAIN_CONFIG_FILE in names
    saved = json.loads((trained.adapter_dir / TRAIN_CONFIG_FILE).read_text())
    assert saved == json.loads(json.dumps(_config().to_dict()))


def test_the_adapter_names_its_base_model_without_a_machine_path(
    trained: Trained, tiny_base: Any
) -> None:
    """``base_model_name_or_path`` is the tiny model's folder name, not the cache path it was
    loaded from, so the adapter's bytes are the same on every machine."""
    import json

    from peft.utils import CONFIG_NAME

    name = json.loads((trained.adapter_dir / CONFIG_NAME).read_text())["base_model_name_or_path"]
    loaded_from = Path(tiny_base.model.name_or_path)
    assert loaded_from.is_absolute()
    assert name == loaded_from.name
    assert "/" not in name


def test_saving_an_adapter_asks_nothing_of_the_base_models_files(
    tiny_base: Any, tmp_path: Path
) -> None:
    """Under its portable name (a folder name, or a Hub id offline) the base model has no
    ``config.json`` to read: peft's check of the embeddings would warn once per adapter (72 in
    the demo's per-persona step)."""
    import warnings

    from peft import get_peft_model

    config = _config(epochs=1)
    model = get_peft_model(tiny_base.model, lora_config(config, tiny_base.model))
    try:
        for adapter_config in model.peft_config.values():
            adapter_config.base_model_name_or_path = portable_base_name(tiny_base)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            save_adapter(model, config, tmp_path / "adapter")
    finally:
        tiny_base.model = model.unload()
    assert (tmp_path / "adapter" / TRAIN_CONFIG_FILE).is_file()


def test_adapter_loads_with_plain_peft_and_generates(trained: Trained) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.tiny import ensure_tiny_model

    tiny_dir = ensure_tiny_model(ModelConfig())
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_dir), str(trained.adapter_dir)
    )
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    enc = tokenizer(
        "Persona: I love hiking.\nA: What do you do on weekends?\nB:", return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(
            **enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_saved_lora_b_weights_are_trained(trained: Trained) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(trained.adapter_dir / "adapter_model.safetensors"))
    lora_b = {name: w for name, w in weights.items() if "lora_B" in name}
    assert lora_b, f"no lora_B weights in {sorted(weights)[:5]}"
    # peft initialises lora_B to zero: non-zero values mean training updated them.
    assert all(float(w.abs().max()) > 0 for w in lora_b.values())


def test_base_model_is_clean_after_training(trained: Trained, tiny_base: Any, pairs: Pairs) -> None:
    _assert_clean(tiny_base.model, trained.snapshot)
    assert not tiny_base.model.training
    again = train_lora(tiny_base, _config(epochs=1), pairs.train[:8], pairs.val)
    assert len(again.eval_losses) >= 1
    _assert_clean(tiny_base.model, trained.snapshot)


def test_base_model_config_is_unchanged_after_training(trained: Trained, tiny_base: Any) -> None:
    assert tiny_base.model.config.use_cache == trained.use_cache_before


def test_report_true_stops_early_and_saves_nothing(
    tiny_base: Any, pairs: Pairs, tmp_path: Path
) -> None:
    snapshot = _snapshot(tiny_base.model)
    calls: list[int] = []
    save_dir = tmp_path / "adapter"

    def report(step: int, loss: float) -> bool:
        calls.append(step)
        return step == 2

    result = train_lora(
        tiny_base, _config(), pairs.train, pairs.val, report=report, save_dir=save_dir
    )
    assert result.stopped_early is True
    assert calls == [1, 2]
    assert [step for step, _ in result.eval_losses] == [1, 2]
    assert result.adapter_dir is None
    assert not save_dir.exists() or not any(save_dir.iterdir())
    _assert_clean(tiny_base.model, snapshot)


def test_uneven_last_interval_is_evaluated_once(tiny_base: Any, pairs: Pairs) -> None:
    """20 pairs in batches of 2 are 10 steps; 3 evaluations an epoch are one every 3 steps.
    The Trainer evaluates at steps 3, 6, 9 and at the last step, 10: four evaluations, each
    of other weights (the last one is not repeated)."""
    config = _config(epochs=1, batch_size=2, evals_per_epoch=3)
    result = train_lora(tiny_base, config, pairs.train[:20], pairs.val)
    assert result.train_steps == 10
    assert [step for step, _ in result.eval_losses] == [1, 2, 3, 4]
    losses = [loss for _, loss in result.eval_losses]
    assert len(set(losses)) == len(losses), f"the final weights were evaluated twice: {losses}"


def test_log_file_gets_the_config_and_every_evaluation(
    tiny_base: Any, pairs: Pairs, tmp_path: Path
) -> None:
    import json

    log_path = tmp_path / "logs" / "run.log"
    config = _config(epochs=1)
    result = train_lora(tiny_base, config, pairs.train, pairs.val, log_path=log_path)
    lines = log_path.read_text().splitlines()
    assert lines[0] == f"config {json.dumps(config.to_dict(), sort_keys=True)}"
    eval_lines = [line for line in lines if "eval_loss=" in line]
    assert len(eval_lines) == len(result.eval_losses) == EVALS_PER_EPOCH
    assert f"eval_loss={result.final_eval_loss:.6g}" in eval_lines[-1]


def test_final_eval_only_evaluates_once_and_trains_the_same_adapter(
    tiny_base: Any, pairs: Pairs
) -> None:
    # No dropout: each evaluation's data loader draws from torch's generator, which would
    # change dropout's masks (not the recipe) between the two runs.
    config = _config(epochs=2, lora_dropout=0.0)
    every = train_lora(tiny_base, config, pairs.train, pairs.val)
    once = train_lora(tiny_base, config, pairs.train, pairs.val, final_eval_only=True)
    assert len(every.eval_losses) == EPOCHS * EVALS_PER_EPOCH
    assert once.eval_losses == ((1, once.final_eval_loss),)
    assert once.train_steps == every.train_steps
    assert once.final_eval_loss == pytest.approx(every.final_eval_loss, rel=1e-6)


def test_progress_shows_bars_but_not_every_log_line(
    tiny_base: Any, pairs: Pairs, capsys: pytest.CaptureFixture[str]
) -> None:
    train_lora(tiny_base, _config(epochs=1), pairs.train, pairs.val, progress=True)
    out, err = capsys.readouterr()
    assert "%|" in out + err  # the progress bar
    assert "'loss'" not in out + err and "'eval_loss'" not in out + err


def test_higher_learning_rate_reaches_lower_eval_loss(tiny_base: Any, pairs: Pairs) -> None:
    low = train_lora(tiny_base, _config(epochs=1, learning_rate=1e-6), pairs.train, pairs.val)
    high = train_lora(tiny_base, _config(epochs=1, learning_rate=5e-3), pairs.train, pairs.val)
    assert high.final_eval_loss < low.final_eval_loss - 0.01


def test_nan_loss_raises_and_leaves_base_clean(tiny_base: Any, pairs: Pairs) -> None:
    snapshot = _snapshot(tiny_base.model)

    def poison(module: Any, inputs: Any, output: Any) -> Any:
        return output * float("nan")

    handle = tiny_base.model.get_input_embeddings().register_forward_hook(poison)
    try:
        with pytest.raises(NonFiniteLossError, match="not finite"):
            train_lora(tiny_base, _config(epochs=1), pairs.train, pairs.val)
    finally:
        handle.remove()
    _assert_clean(tiny_base.model, snapshot)


@pytest.mark.parametrize("empty", ["train", "val"])
def test_empty_split_raises(tiny_base: Any, pairs: Pairs, empty: str) -> None:
    train = [] if empty == "train" else pairs.train
    val = [] if empty == "val" else pairs.val
    with pytest.raises(ValueError, match="need training and validation"):
        train_lora(tiny_base, _config(), train, val)
    assert _lora_module_names(tiny_base.model) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("learning_rate", -1),
        ("learning_rate", float("nan")),
        ("lora_rank", 0),
        ("batch_size", 0),
        ("lora_dropout", 1.0),
        ("evals_per_epoch", 0),
    ],
)
def test_train_config_rejects_invalid_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}="):
        TrainConfig(**{field: value})
