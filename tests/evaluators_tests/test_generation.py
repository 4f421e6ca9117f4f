"""Batched generation: replies in input order, batch callbacks, adapters, cleaning, decoding
options, stopping at the end of the reply line (newline tokens as EOS ids, exact on the tiny
tokenizer and on a BPE whose tokens merge the newline with other text), seeded sampling."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from evaluators.config import EvalConfig
from evaluators.scoring.generation import (
    clean_reply,
    generate_replies,
    generation_config,
    newline_token_ids,
)
from trainers.prompt import build_prompt, fit_prompts

PROMPTS = [
    build_prompt(
        "I love hiking. I have a dog.", "Hi!\nHello, how are you?\nWhat do you do on weekends?"
    ),
    build_prompt("I am a chef.", "What is your job?"),
    build_prompt(
        "I play the guitar in a band. I live in a big city. I drink coffee.",
        "Hey.\nHi there.\nDo you like music?\nYes, a lot.\nWhat do you play?",
    ),
    build_prompt("I have two cats.", ""),
    build_prompt("I study math at a university.", "Hello!\nHi.\nWhat are you studying?"),
]
"""Prompts of different lengths, so batches need left padding."""


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_replies_follow_input_order_and_match_single_generation(tiny_base: Any) -> None:
    batched = generate_replies(
        tiny_base, PROMPTS, eval_config=EvalConfig(batch_size=3, max_new_tokens=12)
    )
    assert len(batched) == len(PROMPTS)
    assert all(isinstance(r, str) and r for r in batched)
    singles = [
        generate_replies(tiny_base, [p], eval_config=EvalConfig(batch_size=1, max_new_tokens=12))[0]
        for p in PROMPTS
    ]
    assert batched == singles


def test_on_batch_sees_every_index_once(tiny_base: Any) -> None:
    seen: list[int] = []
    calls: list[tuple[list[int], list[str]]] = []

    def on_batch(indices: list[int], replies: list[str]) -> None:
        assert len(indices) == len(replies) <= 2
        seen.extend(indices)
        calls.append((list(indices), list(replies)))

    replies = generate_replies(
        tiny_base,
        PROMPTS,
        eval_config=EvalConfig(batch_size=2, max_new_tokens=6),
        on_batch=on_batch,
    )
    assert sorted(seen) == list(range(len(PROMPTS)))
    assert len(calls) == 3
    for indices, batch_replies in calls:
        assert [replies[i] for i in indices] == batch_replies


def test_padding_side_is_restored(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    before = (tokenizer.padding_side, tokenizer.truncation_side)
    generate_replies(tiny_base, PROMPTS[:2], eval_config=EvalConfig(max_new_tokens=2))
    assert (tokenizer.padding_side, tokenizer.truncation_side) == before


def test_empty_prompt_list(tiny_base: Any) -> None:
    assert generate_replies(tiny_base, []) == []


def test_adapter_is_applied_then_removed(tiny_base: Any, zero_adapter: Path) -> None:
    before = _state(tiny_base.model)
    short = EvalConfig(max_new_tokens=8)
    plain = generate_replies(tiny_base, PROMPTS, eval_config=short)
    with_adapter = generate_replies(tiny_base, PROMPTS, adapter_dir=zero_adapter, eval_config=short)
    assert with_adapter == plain  # a zero lora_B does not change the model's output
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []
    after = _state(tiny_base.model)
    assert set(after) == set(before)
    import torch

    assert all(torch.equal(after[k], before[k]) for k in before)


def test_missing_adapter_raises(tiny_base: Any, tmp_path: Path) -> None:
    from peft.utils import CONFIG_NAME

    with pytest.raises(FileNotFoundError, match=re.escape(CONFIG_NAME)):
        generate_replies(tiny_base, PROMPTS[:1], adapter_dir=tmp_path)
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []


def unloadable_copy(adapter: Path, folder: Path) -> Path:
    """A copy of ``adapter`` whose ``lora_A`` tensors have one column more: it passes
    :func:`~trainers.adapter_check.check_adapter_dir` (every shape fits its own rank) but
    does not fit the base model, so peft fails to load it."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from trainers.adapter_check import ADAPTER_WEIGHTS, check_adapter_dir

    shutil.copytree(adapter, folder)
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    for key, tensor in tensors.items():
        if "lora_A" in key:
            tensors[key] = torch.zeros(tensor.shape[0], tensor.shape[1] + 1)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    check_adapter_dir(folder)
    return folder


def test_an_adapter_that_does_not_load_is_named_and_leaves_the_base_model_clean(
    tiny_base: Any, zero_adapter: Path, random_adapters: list[Path], tmp_path: Path
) -> None:
    """peft injects the LoRA layers before it loads the weights: a failed load would leave
    them in the base model for every later method. Both ways of loading (one adapter, and
    the second of a mixed batch's adapters) name the folder and take them out again."""
    import shutil

    from trainers.adapter_check import ADAPTER_WEIGHTS, AdapterError

    wide = unloadable_copy(zero_adapter, tmp_path / "wide")
    before = _state(tiny_base.model)
    short = EvalConfig(max_new_tokens=6)
    plain = generate_replies(tiny_base, PROMPTS[:2], eval_config=short)
    refused = rf"^{re.escape(str(wide))}: does not load onto the base model .*size mismatch"
    with pytest.raises(AdapterError, match=refused):
        generate_replies(tiny_base, PROMPTS[:2], adapter_dir=wide, eval_config=short)
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []
    damaged = tmp_path / "damaged-after-the-check"  # as if cut after the pre-check
    shutil.copytree(zero_adapter, damaged)
    weights = damaged / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(AdapterError, match=rf"^{re.escape(str(damaged))}: does not load onto"):
        generate_replies(tiny_base, PROMPTS[:2], adapter_dir=damaged, eval_config=short)
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []
    assert sorted([random_adapters[0], wide])[-1] == wide  # loaded second, onto a PeftModel
    with pytest.raises(AdapterError, match=refused):
        generate_replies(
            tiny_base, PROMPTS[:2], row_adapters=[random_adapters[0], wide], eval_config=short
        )
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []
    assert not hasattr(tiny_base.model, "peft_config")
    import torch

    after = _state(tiny_base.model)
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert generate_replies(tiny_base, PROMPTS[:2], eval_config=short) == plain


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        (" Mostly hiking.\nA: And you?", "Mostly hiking."),
        ("  two   spaces\tand tab ", "two spaces and tab"),
        ("\nstarts with a newline\nsecond", ""),
        ("ends the line.\n", "ends the line."),
        ("", ""),
        ("no newline", "no newline"),
    ],
)
def test_clean_reply_keeps_the_first_line(raw: str, cleaned: str) -> None:
    assert clean_reply(raw) == cleaned


RUN_ON_PROMPTS = [
    "Persona: I love hiking.\nA: Hi!\nB: Hello!\nA:",
    "Persona: I have two cats.\nA: Hi!\nB: Hello!\nA:",
    "Persona: I am a chef.\nA:",
    "Persona: I have two cats.\nA: Hello!\nB: Hi.\nA:",
]
"""Prompts after which the tiny model runs on past a newline into another turn (prompts that
end on the partner's tag; after its own tag it ends the reply with EOS, as pretrained)."""


def _forward_calls(tiny_base: Any, prompts: list[str], config: EvalConfig) -> tuple[list[str], int]:
    calls = 0

    def count(*_: Any) -> None:
        nonlocal calls
        calls += 1

    handle = tiny_base.model.register_forward_hook(count)
    try:
        replies = generate_replies(tiny_base, prompts, eval_config=config)
    finally:
        handle.remove()
    return replies, calls


def _tokens_to_line_end(tiny_base: Any, prompt: str, max_new_tokens: int) -> int:
    """Tokens a greedy reply takes up to and including its first newline token or EOS
    (``max_new_tokens`` if neither comes), read off one unstopped ``generate``."""
    import torch

    tokenizer = tiny_base.tokenizer
    ids = fit_prompts(tokenizer, [prompt], EvalConfig().prompt_limit)[0].ids
    settings = generation_config(
        EvalConfig(max_new_tokens=max_new_tokens, stop_at_newline=False), tokenizer
    )
    with torch.inference_mode():
        out = tiny_base.model.generate(
            torch.tensor([list(ids)], device=tiny_base.device), generation_config=settings
        )
    new = out[0, len(ids) :].tolist()
    ends = {*newline_token_ids(tokenizer), tokenizer.eos_token_id}
    return next((n + 1 for n, token in enumerate(new) if token in ends), len(new))


def test_stop_at_newline_ends_the_batch_at_its_last_line_end_with_the_same_replies(
    tiny_base: Any,
) -> None:
    """The guarantee, on whatever the model replies: one forward pass per generated token, and
    with ``stop_at_newline`` a prompt stops at its first line end and a batch at the last of
    its prompts' line ends, with the replies of the unstopped run."""
    limit = 30
    full = EvalConfig(max_new_tokens=limit, stop_at_newline=False)
    stopped = EvalConfig(max_new_tokens=limit, stop_at_newline=True)
    prompts = [*RUN_ON_PROMPTS, *PROMPTS]
    line_ends = [_tokens_to_line_end(tiny_base, p, limit) for p in prompts]
    # the condition the saving needs: replies whose line ends before the limit
    early = [p for p, n in zip(prompts, line_ends, strict=True) if n < limit]
    assert early, f"no prompt's reply ends its line within {limit} tokens: {line_ends}"
    for prompt, line_end in zip(prompts, line_ends, strict=True):
        assert _forward_calls(tiny_base, [prompt], stopped)[1] == line_end, prompt
    replies_full, _ = _forward_calls(tiny_base, early, full)
    replies_stopped, steps_stopped = _forward_calls(tiny_base, early, stopped)
    assert replies_stopped == replies_full
    assert steps_stopped == max(n for n in line_ends if n < limit) < limit


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(
    tiny_base: Any,
) -> None:
    import torch

    state = torch.random.get_rng_state()
    sample = EvalConfig(do_sample=True, temperature=1.5, max_new_tokens=20, seed=0)
    first = generate_replies(tiny_base, PROMPTS, eval_config=sample)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = generate_replies(tiny_base, PROMPTS, eval_config=sample)
    assert again == first
    other_seed = generate_replies(
        tiny_base, PROMPTS, eval_config=EvalConfig(**{**sample.to_dict(), "seed": 1})
    )
    greedy = generate_replies(tiny_base, PROMPTS, eval_config=EvalConfig(max_new_tokens=20))
    assert other_seed != first
    assert greedy != first


def test_decoding_options_reach_generate(tiny_base: Any) -> None:
    prompts = [*RUN_ON_PROMPTS[3:], "Persona: I am a chef.\nB:"]
    greedy = generate_replies(tiny_base, prompts)
    for option in ({"no_repeat_ngram_size": 1}, {"repetition_penalty": 3.0}):
        changed = generate_replies(tiny_base, prompts, eval_config=EvalConfig(**option))
        assert changed != greedy, option


def test_generation_config_sets_every_decoding_option(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    greedy = generation_config(EvalConfig(), tokenizer)
    assert (greedy.do_sample, greedy.num_beams, greedy.max_new_tokens) == (False, 1, 40)
    assert greedy.stop_strings is None  # the newline tokens are EOS ids instead
    assert greedy.eos_token_id == [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    assert greedy.temperature is None and greedy.top_k is None  # not sampling: not set
    sample = generation_config(
        EvalConfig(
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.2,
            no_repeat_ngram_size=3,
            stop_at_newline=False,
        ),
        tokenizer,
    )
    assert sample.do_sample and sample.stop_strings is None
    assert (sample.temperature, sample.top_p, sample.top_k) == (0.7, 0.9, 0)
    assert (sample.repetition_penalty, sample.no_repeat_ngram_size) == (1.2, 3)
    assert (sample.pad_token_id, sample.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )


def test_long_prompts_are_fitted_as_in_training(tiny_base: Any) -> None:
    from trainers.prompt import fit_prompt

    limit = 40
    config = EvalConfig(max_prompt_tokens=limit, max_new_tokens=8)
    fitted = [fit_prompt(tiny_base.tokenizer, p, limit) for p in PROMPTS]
    assert any(f.dropped_turns for f in fitted)
    for f, prompt in zip(fitted, PROMPTS, strict=True):
        assert f.text.split("\n")[0] == prompt.split("\n")[0]
    roomy = EvalConfig(max_prompt_tokens=512, max_new_tokens=8)
    assert generate_replies(tiny_base, PROMPTS, eval_config=config) == generate_replies(
        tiny_base, [f.text for f in fitted], eval_config=roomy
    )


BPE_CORPUS = [
    "Persona: I like cats.\nA: hi there.\nB: hello, how are you?\nA: fine!\n\nB: ok\n",
    "Persona: I run.\nB: café’s open?\nA: yes.\nB: nice\nA: bye.\n",
]
"""Text where a byte-level BPE without pre-tokenizer merges the newline with what is around it
(``".\\n"``, ``"\\nA: "``), and multibyte characters split over tokens."""


@pytest.fixture(scope="module")
def merging_bpe() -> Any:
    """A small byte-level BPE trained here (no download) whose merges cross newlines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(BPE_CORPUS * 50, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")


def _assert_stopping_at_newline_tokens_is_exact(tokenizer: Any, sequences: list[list[int]]) -> int:
    """For every sequence: the reply cut after its first newline token is the whole
    sequence's reply, and no text before that token holds a newline. Returns how many
    sequences were cut."""
    stops = set(newline_token_ids(tokenizer))
    cut_count = 0
    for seq in sequences:
        first = next((k for k, t in enumerate(seq) if t in stops), None)
        if first is None:
            assert "\n" not in tokenizer.decode(seq, skip_special_tokens=True), seq
            continue
        cut_count += 1
        before = tokenizer.decode(seq[:first], skip_special_tokens=True)
        cut = tokenizer.decode(seq[: first + 1], skip_special_tokens=True)
        whole = tokenizer.decode(seq, skip_special_tokens=True)
        assert "\n" not in before and "\n" in cut, seq
        assert clean_reply(cut) == clean_reply(whole), seq
    return cut_count


def _random_sequences(tokenizer: Any, n: int, length: int) -> list[list[int]]:
    rng = random.Random(0)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(len(tokenizer)) if i not in special]
    return [rng.choices(vocab, k=length) for _ in range(n)]


def test_newline_tokens_stop_exactly_on_a_bpe_that_merges_newlines(merging_bpe: Any) -> None:
    ids = newline_token_ids(merging_bpe)
    texts = [merging_bpe.decode([i]) for i in ids]
    # the case the ids must handle: newlines merged with text before and after them
    assert any(t.endswith("\n") and len(t) > 1 for t in texts), texts
    assert any(not t.endswith("\n") for t in texts), texts
    sequences = _random_sequences(merging_bpe, 400, 12)
    sequences += [merging_bpe(text)["input_ids"] for text in BPE_CORPUS]
    assert _assert_stopping_at_newline_tokens_is_exact(merging_bpe, sequences) > 100


def test_newline_tokens_stop_exactly_on_the_tiny_tokenizer(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    ids = newline_token_ids(tokenizer)
    assert ids and all("\n" in tokenizer.decode([i]) for i in ids)
    assert not set(ids) & set(tokenizer.all_special_ids)
    sequences = _random_sequences(tokenizer, 200, 40)
    sequences += [tokenizer(p)["input_ids"] for p in PROMPTS + RUN_ON_PROMPTS]
    assert _assert_stopping_at_newline_tokens_is_exact(tokenizer, sequences) > 5


def test_newline_tokens_are_cached_until_the_vocabulary_grows(merging_bpe: Any) -> None:
    first = newline_token_ids(merging_bpe)
    assert newline_token_ids(merging_bpe) is first
    merging_bpe.add_tokens(["zz\nzz"])
    merging_bpe.add_special_tokens({"additional_special_tokens": ["<sep>\n"]})
    grown = newline_token_ids(merging_bpe)
    added = merging_bpe.convert_tokens_to_ids(["zz\nzz", "<sep>\n"])
    assert added[0] in grown and set(first) < set(grown)
    assert added[1] not in grown  # special: replies are decoded without it


def test_newline_eos_ids_give_the_replies_of_stop_strings(tiny_base: Any) -> None:
    """The previous way to stop, transformers' stop_strings, one prompt at a time."""
    import torch
    from transformers import GenerationConfig

    tokenizer = tiny_base.tokenizer
    config = EvalConfig(max_new_tokens=30)
    settings = generation_config(config, tokenizer)
    with_stop_strings = GenerationConfig(
        **{**settings.to_diff_dict(), "eos_token_id": tokenizer.eos_token_id},
        stop_strings=["\n"],
    )
    prompts = RUN_ON_PROMPTS + PROMPTS
    expected = []
    with torch.inference_mode():
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            out = tiny_base.model.generate(
                **enc, generation_config=with_stop_strings, tokenizer=tokenizer
            )
            new = out[0, enc["input_ids"].shape[1] :]
            expected.append(clean_reply(tokenizer.decode(new, skip_special_tokens=True)))
    assert generate_replies(tiny_base, prompts, eval_config=config) == expected
