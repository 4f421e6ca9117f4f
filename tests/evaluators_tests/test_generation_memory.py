"""Out of memory in generation, caused for real (an address-space limit,
:mod:`tests.memory_limit`): the batch's rows run fewer at a time, with the batch's padding, and
the replies are those of the whole batch."""

from __future__ import annotations

import pytest

from tests.memory_limit import run_child

N = 32
HEADROOM_MIB = 10
"""Room in which 32 rows of about 250 tokens do not fit but a few do (on the machine this was
written on: 2 rows fit at 4 MiB, 4 at 10 MiB, 16 at 25 MiB)."""


@pytest.mark.slow
def test_generation_out_of_memory_halves_the_rows_and_keeps_the_replies() -> None:
    result = run_child("generate", {"n": N, "max_new_tokens": 8, "headroom_mib": HEADROOM_MIB})
    assert f"generation: out of memory at {N} rows" in result["log"], result["log"][-3000:]
    assert len(result["limited"]) == N
    assert len(set(result["free"])) > N // 2  # personas' replies differ: a real comparison
    assert result["limited"] == result["free"]
