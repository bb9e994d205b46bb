"""Tests for model.text: tweet normalisation, tokenizer and vocabulary."""

from __future__ import annotations

import json

import pytest
import torch

from fusion_testkit.factories import tiny_model_config
from model.text import Vocabulary, build_vocabulary, normalize_text, tokenize

CONFIG = tiny_model_config()


def test_urls_become_a_token() -> None:
    assert normalize_text("look https://t.co/AbC123 and www.example.com/x", CONFIG) == "look http and http"


def test_mentions_become_a_token() -> None:
    assert normalize_text("thanks @Bob_99 and @alice!", CONFIG) == "thanks @user and @user!"


def test_email_addresses_are_not_mentions() -> None:
    assert normalize_text("mail me at me@example", CONFIG) == "mail me at me@example"


def test_leading_retweet_marker_is_removed() -> None:
    assert normalize_text("RT @news: Big day", CONFIG) == "@user: big day"


def test_hashtag_sign_is_stripped() -> None:
    assert normalize_text("so #Happy today #2024", CONFIG) == "so happy today 2024"


def test_whitespace_is_collapsed_and_html_entities_unescaped() -> None:
    assert normalize_text("  salt &amp; \n pepper\t ", CONFIG) == "salt & pepper"


def test_flags_turn_each_rule_off() -> None:
    config = tiny_model_config(
        text_lowercase=False,
        text_replace_urls=False,
        text_replace_mentions=False,
        text_strip_retweet=False,
        text_strip_hashtags=False,
    )
    text = "RT @Bob: #Wow http://x.y"
    assert normalize_text(text, config) == text


def test_tokenize_splits_words_and_symbols() -> None:
    assert tokenize("i can't believe it!! 😀 @user") == [
        "i",
        "can't",
        "believe",
        "it",
        "!",
        "!",
        "😀",
        "@user",
    ]


def test_vocabulary_orders_by_frequency_then_alphabet() -> None:
    vocab = Vocabulary.build(["b a", "b c", "b a"])
    assert vocab.tokens == ("<pad>", "<unk>", "b", "a", "c")


def test_vocabulary_respects_max_size_and_min_freq() -> None:
    texts = ["x x x y y z"]
    assert Vocabulary.build(texts, max_size=3).tokens == ("<pad>", "<unk>", "x")
    assert Vocabulary.build(texts, min_freq=2).tokens == ("<pad>", "<unk>", "x", "y")


def test_encode_pads_truncates_and_maps_unknown_tokens() -> None:
    vocab = Vocabulary.build(["good day", "bad day"])
    out = vocab.encode(["good day", "weird", "bad good day day"], max_tokens=3)
    good, day, bad = (vocab.tokens.index(t) for t in ("good", "day", "bad"))
    assert out["input_ids"].tolist() == [[good, day, 0], [1, 0, 0], [bad, good, day]]
    assert out["attention_mask"].tolist() == [[True, True, False], [True, False, False], [True, True, True]]


def test_encode_of_empty_texts_has_one_padding_column() -> None:
    out = Vocabulary.build(["a"]).encode(["", ""], max_tokens=8)
    assert torch.equal(out["input_ids"], torch.zeros(2, 1, dtype=torch.long))
    assert not out["attention_mask"].any()


def test_vocabulary_round_trips_through_json() -> None:
    vocab = Vocabulary.build(["some words here", "and more words"])
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


@pytest.mark.parametrize(
    "data", [{}, {"tokens": "abc"}, {"tokens": ["a", "b"]}, {"tokens": ["<pad>", "<unk>", 3]}]
)
def test_malformed_vocabulary_dict_is_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        Vocabulary.from_dict(data)


def test_build_vocabulary_sees_normalised_text() -> None:
    vocab = build_vocabulary(["RT @Someone: #Great https://t.co/x"], CONFIG)
    assert set(vocab.tokens[2:]) == {"@user", ":", "great", "http"}
