"""Diversity of a method's replies, reported beside its similarity.

A small model decoded greedily can answer most prompts with one sentence; its similarity then
measures that sentence, not the persona. Distinct-n (Li et al., 2016, "A Diversity-Promoting
Objective Function for Neural Conversation Models") counts the different word n-grams over all
replies; the share of the most common reply shows such a collapse directly.

Words are the lower-cased, whitespace-separated tokens of a reply (replies are already
whitespace-normalized by :func:`evaluators.scoring.generation.clean_reply`). Replies are compared as
whole strings, exactly as generated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEGENERATE_SHARE = 0.10
"""A method whose most common reply is repeated (given more than once) and is more than this
share of its replies is degenerate.

With ~10 test examples per persona, a reply repeated across more than a tenth of all examples
is no longer an answer to its prompt: it is the model's one sentence, shared across personas
(the motivating case: 404 of 720 replies identical; on spc-cluster4 a 3-word "I'm looking to?"
was 118 of 794). Short replies are no exception: a short sentence repeated that often is the
same collapse, and its similarity measures that sentence. A reply given once is no repeat,
whatever its share: with fewer than 10 replies (8 test examples: 1/8 = 12.5%) every method
whose replies all differ would otherwise be flagged.
"""


@dataclass(frozen=True)
class Diversity:
    """How varied a method's replies are."""

    distinct_1: float
    """Different words / all words, over every reply (0 when there are no words)."""
    distinct_2: float
    """Different word pairs / all word pairs, over every reply (0 when there are none)."""
    top_reply_share: float
    """Share of the replies that equal the most common reply."""
    n_distinct_replies: int
    """Number of different replies."""
    mean_words: float
    """Mean number of words per reply."""
    degenerate: bool
    """True when the most common reply is given more than once and ``top_reply_share``
    exceeds :data:`DEGENERATE_SHARE`."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _distinct(replies: Sequence[list[str]], n: int) -> float:
    """Distinct-n: unique n-grams over all replies divided by the count of all n-grams."""
    grams = Counter(tuple(words[i : i + n]) for words in replies for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def diversity(replies: Sequence[str]) -> Diversity:
    """Distinct-1/2, the most common reply's share, and the mean length of some replies.

    Args:
        replies: One method's replies, one per evaluated example.

    Raises:
        ValueError: If there are no replies (diversity of nothing is undefined).
    """
    if not replies:
        raise ValueError("diversity needs at least one reply, got none")
    words = [reply.lower().split() for reply in replies]
    counts = Counter(replies)
    top = counts.most_common(1)[0][1]
    share = top / len(replies)
    return Diversity(
        distinct_1=_distinct(words, 1),
        distinct_2=_distinct(words, 2),
        top_reply_share=share,
        n_distinct_replies=len(counts),
        mean_words=sum(len(w) for w in words) / len(words),
        degenerate=top > 1 and share > DEGENERATE_SHARE,
    )
