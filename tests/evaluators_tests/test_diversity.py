"""Diversity of replies: distinct-n, the most common reply's share, and the degenerate flag."""

from __future__ import annotations

import pytest

from evaluators.scoring.diversity import DEGENERATE_SHARE, diversity


def test_three_identical_of_ten_is_degenerate() -> None:
    replies = ["I like dogs."] * 3 + [f"reply number {i}" for i in range(7)]
    d = diversity(replies)
    assert d.top_reply_share == pytest.approx(0.3)
    assert d.n_distinct_replies == 8
    assert d.degenerate
    assert d.mean_words == pytest.approx((3 * 3 + 7 * 3) / 10)


def test_known_distinct_n() -> None:
    # words: a b a | a b  -> unigrams a,b,a,a,b (2 distinct of 5); bigrams ab, ba, ab (2 of 3)
    d = diversity(["a b a", "A B"])
    assert d.distinct_1 == pytest.approx(2 / 5)
    assert d.distinct_2 == pytest.approx(2 / 3)
    assert d.n_distinct_replies == 2  # replies compare as generated (case kept)
    assert d.top_reply_share == pytest.approx(0.5)


def test_all_different_replies_are_not_degenerate() -> None:
    replies = [f"answer {i} here" for i in range(20)]
    d = diversity(replies)
    assert d.top_reply_share == pytest.approx(1 / 20)
    assert not d.degenerate
    assert d.distinct_1 == pytest.approx(22 / 60)  # "answer", "here", and 20 numbers


def test_threshold_is_strictly_more_than_the_share() -> None:
    at_limit = ["same"] + [f"other {i}" for i in range(9)]  # 1 of 10 = exactly the limit
    assert diversity(at_limit).top_reply_share == pytest.approx(DEGENERATE_SHARE)
    assert not diversity(at_limit).degenerate
    above = ["same", "same"] + [f"other {i}" for i in range(8)]
    assert diversity(above).degenerate


def test_empty_replies_count_and_have_no_ngrams() -> None:
    d = diversity(["", "", "hi"])
    assert d.top_reply_share == pytest.approx(2 / 3) and d.degenerate
    assert d.distinct_2 == 0.0 and d.distinct_1 == 1.0
    assert d.mean_words == pytest.approx(1 / 3)


def test_no_replies_raise() -> None:
    with pytest.raises(ValueError, match="at least one reply"):
        diversity([])


def test_to_dict_is_json_ready() -> None:
    import json

    assert json.loads(json.dumps(diversity(["x y"]).to_dict()))["distinct_2"] == 1.0


def test_a_reply_given_once_is_no_repeat_however_few_the_replies() -> None:
    # 8 test examples of short, all different replies: 1/8 = 12.5% is over the share, but
    # nothing is repeated, so nothing collapsed.
    short = ["Yes.", "No.", "Sure.", "Maybe.", "I do.", "Why?", "Nice.", "Okay."]
    d = diversity(short)
    assert d.top_reply_share == pytest.approx(0.125) and d.n_distinct_replies == 8
    assert not d.degenerate
    assert not diversity(["Hello."]).degenerate
    # The same short sentence repeated is the collapse the flag is for, short or not.
    assert diversity(["Yes."] * 2 + short[1:7]).degenerate
    assert diversity(["Yes."] * 90 + [f"reply {i}" for i in range(630)]).degenerate  # 12.5%
