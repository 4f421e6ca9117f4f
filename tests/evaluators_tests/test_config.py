"""EvalConfig: defaults, checks that name the field, and a key that changes with every field."""

from __future__ import annotations

import dataclasses

import pytest

from evaluators.config import RUN_FIELDS, VERDICT_FIELDS, EvalConfig


def test_defaults_are_greedy_and_stop_at_the_newline() -> None:
    config = EvalConfig()
    assert (config.batch_size, config.max_new_tokens, config.max_prompt_tokens) == (32, 40, None)
    assert config.stop_at_newline and not config.do_sample
    assert config.to_dict()["repetition_penalty"] == 1.0


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EvalConfig().batch_size = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("max_new_tokens", 0),
        ("max_prompt_tokens", 0),
        ("temperature", 0.0),
        ("temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("repetition_penalty", 0.0),
        ("no_repeat_ngram_size", -1),
        ("seed", -1),
        ("min_effect", -0.5),
        ("min_effect", 100.0),
        ("min_effect", float("inf")),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"invalid {field}=.*expected"):
        EvalConfig(**{field: value, "do_sample": True})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("temperature", 0.7), ("top_p", 0.9), ("top_k", 5)])
def test_sampling_settings_need_do_sample(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"invalid {field}=.*do_sample=True"):
        EvalConfig(**{field: value})  # type: ignore[arg-type]
    assert getattr(EvalConfig(**{field: value, "do_sample": True}), field) == value  # type: ignore[arg-type]


def test_key_is_stable_and_changes_with_every_field() -> None:
    base = EvalConfig(do_sample=True)
    assert base.key == EvalConfig(do_sample=True).key
    assert len(base.key) == 12 and int(base.key, 16) >= 0
    changed = {
        "batch_size": 8,
        "max_new_tokens": 20,
        "max_prompt_tokens": 128,
        "stop_at_newline": False,
        "do_sample": False,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 5,
        "repetition_penalty": 1.3,
        "no_repeat_ngram_size": 3,
        "seed": 7,
    }
    every = {f.name for f in dataclasses.fields(EvalConfig)}
    assert set(changed) | set(RUN_FIELDS) | set(VERDICT_FIELDS) == every
    keys = {dataclasses.replace(base, **{name: value}).key for name, value in changed.items()}
    assert len(keys) == len(changed) and base.key not in keys
    # how generation runs (compiled or not, adapters mixed or not) leaves the key alone
    run = {"compile_decoding": "buckets", "adapter_batches": "mixed"}
    assert set(run) == set(RUN_FIELDS)
    assert {dataclasses.replace(base, **{k: v}).key for k, v in run.items()} == {base.key}
    # nor does how the numbers are judged: stored replies are read again under another margin
    assert set(VERDICT_FIELDS) == {"min_effect"}
    assert dataclasses.replace(base, min_effect=5.0).key == base.key


def test_the_minimum_effect_defaults_to_2_points() -> None:
    assert EvalConfig().min_effect == 2.0
    assert EvalConfig(min_effect=0).min_effect == 0.0  # no margin: any difference above zero
    assert isinstance(EvalConfig(min_effect=3).min_effect, float)  # type: ignore[arg-type]


def test_an_integer_float_setting_has_the_key_of_its_float() -> None:
    as_int = EvalConfig(repetition_penalty=2)  # type: ignore[arg-type]
    assert as_int.repetition_penalty == 2.0 and isinstance(as_int.repetition_penalty, float)
    assert as_int.key == EvalConfig(repetition_penalty=2.0).key


def test_the_prompt_limit_is_derived_from_training() -> None:
    """Without a limit of its own, prompt and reply fit the sequence length training used."""
    derived = EvalConfig(max_new_tokens=40).for_training(256)
    assert derived.max_prompt_tokens == 216 and derived.prompt_limit == 216
    assert derived.key != EvalConfig(max_new_tokens=40).key  # the key names the limit in force
    assert EvalConfig().prompt_limit == 216  # unresolved: the default training length
    assert EvalConfig(max_prompt_tokens=300).for_training(256).max_prompt_tokens == 300
    with pytest.raises(ValueError, match=r"invalid max_new_tokens=250: expected at most 240"):
        EvalConfig(max_new_tokens=250).for_training(256)
