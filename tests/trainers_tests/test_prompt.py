"""The prompt format that training and evaluation share, and fitting it into a token limit."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.datafiles import SPC_CSV
from trainers.prompt import (
    PARTNER,
    PERSONA_TAG,
    SELF,
    ContextLoss,
    build_prompt,
    fit_prompt,
    fit_prompts,
    reply_target,
)


def test_prompt_puts_persona_first_and_alternates_speakers() -> None:
    prompt = build_prompt(
        "I love   hiking.\nI have a cat.", "Hi!\nHello there.\n\nWhat do you do on weekends?"
    )
    lines = prompt.split("\n")
    assert lines[0] == "Persona: I love hiking. I have a cat."
    assert lines[1:] == [
        f"{PARTNER}: Hi!",
        f"{SELF}: Hello there.",
        f"{PARTNER}: What do you do on weekends?",
        f"{SELF}:",
    ]


@pytest.mark.parametrize("n_turns", [1, 2, 3, 4])
def test_last_context_turn_is_always_the_partner(n_turns: int) -> None:
    context = "\n".join(f"turn {i}" for i in range(n_turns))
    lines = build_prompt("I am me.", context).split("\n")
    assert lines[0].startswith("Persona: ")
    turns = lines[1:-1]
    assert len(turns) == n_turns
    assert turns[-1] == f"{PARTNER}: turn {n_turns - 1}"
    speakers = [t.split(":", 1)[0] for t in turns]
    assert all(a != b for a, b in itertools.pairwise(speakers))
    assert lines[-1] == "B:"


def test_prompt_with_empty_context() -> None:
    assert build_prompt("I am me.", "") == "Persona: I am me.\nB:"


def test_reply_target_has_one_leading_space() -> None:
    assert reply_target("  Mostly\nhiking  trails. ") == " Mostly hiking trails."


# Fitting prompts into a token limit, on real Synthetic-Persona-Chat rows and the tiny tokenizer.


@pytest.fixture(scope="module")
def real_prompts() -> list[tuple[str, str]]:
    """(persona, context) of the real validation split's first 60 personas, all examples."""
    from trainers.data import SplitConfig, load_dataset

    dataset = load_dataset(SPC_CSV, split=SplitConfig(n_test=1, val_fraction=0.25)).dataset
    return [(p.text, ex.context) for p in dataset.personas[:60] for ex in p.examples]


def _turns(prompt: str) -> list[str]:
    return prompt.split("\n")[1:-1]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def test_fitted_prompts_keep_the_persona_whole_and_the_newest_turns(
    tiny_base: Any, real_prompts: list[tuple[str, str]]
) -> None:
    tokenizer, limit = tiny_base.tokenizer, 128
    prompts = [build_prompt(persona, context) for persona, context in real_prompts]
    fitted = fit_prompts(tokenizer, prompts, limit)
    assert len(fitted) == len(prompts)
    cut = 0
    for prompt, fit in zip(prompts, fitted, strict=True):
        assert list(fit.ids) == _ids(tokenizer, fit.text)
        assert len(fit.ids) <= limit
        assert not fit.persona_truncated  # no persona of these is over 128 tokens alone
        assert fit.text.split("\n")[0] == prompt.split("\n")[0]  # the persona, whole
        assert fit.text.endswith(f"\n{SELF}:")
        turns, kept = _turns(prompt), _turns(fit.text)
        assert kept == turns[len(turns) - len(kept) :]  # the newest turns, in order
        assert fit.dropped_turns == len(turns) - len(kept)
        if fit.dropped_turns:
            cut += 1
            # as many as fit: one more (older) turn would be over the limit
            one_more = "\n".join([prompt.split("\n")[0], *turns[-len(kept) - 1 :], f"{SELF}:"])
            assert len(_ids(tokenizer, one_more)) > limit
        else:
            assert fit.text == prompt
    # the real contexts are long: many examples lose turns at this limit, and are counted
    loss = ContextLoss.of(fitted, limit)
    assert loss == ContextLoss(len(prompts), cut, 0, limit)
    assert len(prompts) / 4 < cut < len(prompts)


def test_cutting_from_the_left_would_have_lost_the_persona(
    tiny_base: Any, real_prompts: list[tuple[str, str]]
) -> None:
    tokenizer, limit = tiny_base.tokenizer, 256
    prompts = [build_prompt(persona, context) for persona, context in real_prompts]
    persona_lines = [prompt.split("\n")[0] for prompt in prompts]
    left_cut = [tokenizer.decode(_ids(tokenizer, p)[-limit:]) for p in prompts]
    lost_before = sum(
        not text.startswith(line) for text, line in zip(left_cut, persona_lines, strict=True)
    )
    fitted = fit_prompts(tokenizer, prompts, limit)
    assert lost_before > len(prompts) / 4
    assert all(f.text.startswith(line) for f, line in zip(fitted, persona_lines, strict=True))


def test_a_persona_alone_over_the_limit_is_cut_and_says_so(tiny_base: Any) -> None:
    tokenizer, limit = tiny_base.tokenizer, 24
    persona = "I love hiking on mountain trails every weekend and I have a cat named Milo. " * 3
    prompt = build_prompt(persona, "Hi!\nHello.\nWhat do you do?")
    fit = fit_prompt(tokenizer, prompt, limit)
    assert fit.persona_truncated and fit.lost_context
    assert fit.dropped_turns == 3
    assert len(fit.ids) <= limit and list(fit.ids) == _ids(tokenizer, fit.text)
    head, tag = fit.text.split("\n")
    assert tag == f"{SELF}:"
    assert prompt.startswith(head) and len(head) > len(PERSONA_TAG) + 10
    assert ContextLoss.of([fit], limit) == ContextLoss(1, 1, 1, limit)
    assert "1 with the persona cut" in str(ContextLoss.of([fit], limit))


def test_prompts_within_the_limit_are_unchanged(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    prompt = build_prompt("I am me.", "Hi!\nWhat do you do?")
    fit = fit_prompt(tokenizer, prompt, 512)
    assert (fit.text, list(fit.ids), fit.dropped_turns, fit.lost_context) == (
        prompt,
        _ids(tokenizer, prompt),
        0,
        False,
    )
    # any text within the limit passes, in or out of the format
    assert fit_prompt(tokenizer, "hello", 512).text == "hello"
    assert fit_prompts(tokenizer, [], 10) == []


def test_fitting_refuses_a_limit_too_small_or_a_foreign_long_prompt(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    with pytest.raises(ValueError, match="max_tokens=1 cannot hold"):
        fit_prompt(tokenizer, build_prompt("I am me.", "Hi!"), 1)
    with pytest.raises(ValueError, match="not a prompt of build_prompt"):
        fit_prompt(tokenizer, "some text " * 50, 16)


def test_fitting_a_prompt_over_the_models_length_warns_nothing(
    tiny_base: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt longer than the tokenizer's model_max_length is what fitting is for:
    transformers' "Token indices sequence length is longer ..." would only alarm the user."""
    from transformers import tokenization_utils_base

    warnings: list[str] = []
    monkeypatch.setattr(
        tokenization_utils_base.logger, "warning", lambda msg, *a, **k: warnings.append(msg)
    )
    tokenizer = tiny_base.tokenizer
    key = "sequence-length-is-longer-than-the-specified-maximum"  # warned once per tokenizer
    persona = "I like dogs. " * 4
    context = [f"turn {i}: " + "we talked about the weather and the sea. " * 6 for i in range(60)]
    prompt = build_prompt(persona, "\n".join(context))
    assert len(tokenizer(prompt, verbose=False)["input_ids"]) > tokenizer.model_max_length

    tokenizer.deprecation_warnings.pop(key, None)
    fit = fit_prompt(tokenizer, prompt, 128)
    assert len(fit.ids) <= 128
    assert not [w for w in warnings if "sequence length" in w]
    tokenizer(prompt)  # what fitting did before
    assert [w for w in warnings if "sequence length" in w]
    tokenizer.deprecation_warnings.pop(key, None)
