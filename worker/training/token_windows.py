"""Entity tagging inputs: words in, token windows out, and per-token logits back to words.

Tags belong to words but the model sees sub-tokens, so only each word's FIRST sub-token
carries the word's tag; its other pieces and the special tokens get -100, which the loss
ignores. Sentences longer than the model's window are never truncated (a tagger that drops
the end of a sentence silently loses entities): they are cut into overlapping windows, each
starting on a word's first sub-token, and a word seen by several windows is read back from the
one where it has the most context on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from worker.training.text_data import TOKENIZE_CHUNK, padded_batch

IGNORE = -100  # the label value torch's cross-entropy skips
WORD = re.compile(r"\w+|[^\w\s]")  # the upload side splits typed text with the same rule


@dataclass(frozen=True)
class TokenWindows:
    """Every window tokenised once; (windows, max_length) arrays, right-padded. Windows of a
    sentence are consecutive and in reading order, and sentences come in their given order."""

    arrays: dict[str, np.ndarray]  # input_ids and, where the tokenizer uses them, token_type_ids
    lengths: np.ndarray  # real tokens per window (int64)
    labels: np.ndarray  # int64 tag id on words' first sub-tokens, -100 elsewhere
    sentence: np.ndarray  # (windows,) int64: the sentence each window came from
    word_ids: np.ndarray  # int32 word index within the sentence on first sub-tokens, -1 elsewhere

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        out = padded_batch(self.arrays, self.lengths, idx)
        width = out["attention_mask"].shape[1]
        out["labels"] = torch.from_numpy(np.ascontiguousarray(self.labels[idx, :width]))
        return out

    def windows_of(self, sentences: Sequence[int] | np.ndarray) -> np.ndarray:
        """Window indices of `sentences`, sentence by sentence in the order given."""
        starts, counts = self._ranges(sentences)
        # Each sentence's run start..start+count, without a Python loop over sentences.
        return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())

    def _ranges(self, sentences: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First window and number of windows of each sentence (`sentence` is sorted)."""
        wanted = np.asarray(sentences, dtype=np.int64)
        starts = np.searchsorted(self.sentence, wanted, side="left")
        return starts, np.searchsorted(self.sentence, wanted, side="right") - starts


def words_of_text(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Typed text as words and punctuation marks, with each one's (start, end) in `text`,
    so predicted tags can be shown on the text the user typed."""
    found = list(WORD.finditer(text))
    return [m.group() for m in found], [m.span() for m in found]


class _Template(NamedTuple):
    """What the tokenizer puts around one sequence, and the token type of the words."""

    pre_ids: list[int]
    post_ids: list[int]
    pre_types: list[int]
    post_types: list[int]
    word_type: int


def _template(tokenizer) -> _Template:
    """Read from encoding a one-word sentence, so each tokenizer's own rule ([CLS] … [SEP],
    <s> … </s>, … </s>) is followed rather than one assumed here."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids = list(enc["input_ids"][0])
    types = list(enc["token_type_ids"][0]) if "token_type_ids" in enc else [0] * len(ids)
    words = enc.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return _Template(ids[:first], ids[last + 1 :], types[:first], types[last + 1 :], types[first])


def _sentence_tokens(tokenizer, enc, i: int, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentence `i`'s sub-token ids and the word of each. A word the tokenizer turns into
    nothing (a control character the normaliser strips) becomes the unknown token, so every
    word keeps a place to be tagged and predicted."""
    ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
    words = np.asarray([-1 if w is None else w for w in enc.word_ids(i)], dtype=np.int64)
    ids, words = ids[words >= 0], words[words >= 0]
    present = np.zeros(n_words, dtype=bool)
    present[words] = True
    if not present.all():  # rare, so the plain check first
        missing = np.flatnonzero(~present)
        if tokenizer.unk_token_id is None:
            raise ValueError("a word gives no tokens and the tokenizer has no unknown token")
        at = np.searchsorted(words, missing)  # words are in order, so this keeps the order
        ids = np.insert(ids, at, tokenizer.unk_token_id)
        words = np.insert(words, at, missing)
    return ids, words


def _spans(starts: np.ndarray, n: int, room: int, stride: int) -> list[tuple[int, int]]:
    """[start, stop) token ranges of the windows over a sentence of `n` tokens whose words
    begin at `starts`. Each window begins on a word's first sub-token and, where it can,
    `stride` tokens before the previous window's end; the next one always begins at or before
    the first word the previous one left out, so every word's first sub-token is in one."""
    spans = []
    start = 0
    while True:
        stop = min(start + room, n)
        spans.append((start, stop))
        later = starts[starts > start]
        if stop >= n or len(later) == 0:
            return spans
        back = later[later <= stop - stride]
        # No word begins in the overlap region (one very long word): the next word it is,
        # with less overlap, rather than a window that repeats this one.
        start = int(back[-1]) if len(back) else int(later[0])


_Window = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # sentence, ids, word ids, labels


def _window_arrays(rows: list[_Window], t: _Template, max_length: int) -> tuple[np.ndarray, ...]:
    """Windows as right-padded arrays, the tokenizer's special tokens around each."""
    n, pre = len(rows), len(t.pre_ids)
    ids = np.zeros((n, max_length), dtype=np.int32)
    types = np.zeros((n, max_length), dtype=np.int32)
    word_ids = np.full((n, max_length), -1, dtype=np.int32)
    labels = np.full((n, max_length), IGNORE, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    ids[:, :pre], types[:, :pre] = t.pre_ids, t.pre_types
    for r, (_, tokens, scored, tagged) in enumerate(rows):
        stop = pre + len(tokens)
        lengths[r] = stop + len(t.post_ids)
        ids[r, pre:stop], types[r, pre:stop] = tokens, t.word_type
        ids[r, stop : lengths[r]], types[r, stop : lengths[r]] = t.post_ids, t.post_types
        word_ids[r, pre:stop] = scored
        labels[r, pre:stop] = tagged
    sentence = np.asarray([row[0] for row in rows], dtype=np.int64)
    return ids, types, word_ids, labels, lengths, sentence


def tokenize_words(
    tokenizer,
    words: list[list[str]],
    tags: list[list[int]] | None,
    *,
    max_length: int,
    stride: int = 32,
    inside: Sequence[int] | None = None,
) -> TokenWindows:
    """Tokenise word-split sentences into windows of at most `max_length` tokens, overlapping
    by `stride` tokens where a sentence needs several. `tags` None (prediction) leaves every
    label -100. `stride` is capped at half a window's room, so long sentences still advance
    by half a window per window rather than a token at a time. `inside`: for each tag id,
    the id a word's later sub-tokens train on (B-X → I-X); None leaves them -100."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("this model has no fast tokenizer (tokenizer.json); it is not supported")
    if tags is not None and [len(t) for t in tags] != [len(w) for w in words]:
        raise ValueError("tags must give one tag id per word of every sentence")
    template = _template(tokenizer)
    room = max_length - len(template.pre_ids) - len(template.post_ids)
    if room < 1:
        raise ValueError(f"max_length {max_length} leaves no room beside the special tokens")
    if stride < 0:
        raise ValueError("stride must not be negative")
    stride = min(stride, room // 2)
    # One empty part first, so that no sentences at all still gives arrays of the right shapes.
    parts = [_window_arrays([], template, max_length)]
    for first in range(0, len(words), TOKENIZE_CHUNK):
        batch = words[first : first + TOKENIZE_CHUNK]
        # Specials are added per window below; verbose=False: long sentences are expected.
        enc = tokenizer(batch, is_split_into_words=True, add_special_tokens=False, verbose=False)
        rows: list[_Window] = []
        for i, sentence_words in enumerate(batch):
            ids, word_of = _sentence_tokens(tokenizer, enc, i, len(sentence_words))
            is_first = np.r_[True, word_of[1:] != word_of[:-1]] if len(ids) else np.zeros(0, bool)
            tag_of = np.asarray(tags[first + i] if tags is not None else [], dtype=np.int64)
            for a, b in _spans(np.flatnonzero(is_first), len(ids), room, stride):
                scored = np.where(is_first[a:b], word_of[a:b], -1)
                if tags is None:
                    tagged = np.full(b - a, IGNORE, dtype=np.int64)
                else:  # -1 indexes some tag, but only where the mask throws it away
                    tagged = np.where(scored >= 0, tag_of[scored], IGNORE)
                    if inside is not None:  # later pieces of a word: inside its entity
                        later = np.asarray(inside, dtype=np.int64)[tag_of[word_of[a:b]]]
                        tagged = np.where(scored >= 0, tagged, later)
                rows.append((first + i, ids[a:b], scored, tagged))
        parts.append(_window_arrays(rows, template, max_length))
    ids_all, types_all, words_all, labels_all, lengths_all, sentence_all = (
        np.concatenate(arrays) for arrays in zip(*parts, strict=True)
    )
    keep_types = "token_type_ids" in tokenizer.model_input_names
    arrays = {"input_ids": ids_all} | ({"token_type_ids": types_all} if keep_types else {})
    return TokenWindows(arrays, lengths_all, labels_all, sentence_all, words_all)


def words_from_windows(
    windows: TokenWindows,
    logits: np.ndarray,
    sentences: Sequence[int],
    words_per_sentence: Sequence[int],
) -> list[np.ndarray]:
    """Per-word logits, one (words, classes) array per sentence in `sentences`.

    `logits` is (len(windows.windows_of(sentences)), width, classes) in that order — the
    windows of just these sentences, so predicting a few sentences needs no array over all
    windows; `width` must reach the last scored token (positions past a window's length are
    never read). A word in several windows is read from the one where it is furthest from a
    window edge that cuts the sentence (a sentence's own start and end are no cut: the
    first and last windows miss nothing on that side); ties go to the earlier window.
    """
    idx = windows.windows_of(sentences)
    if logits.shape[0] != len(idx):
        raise ValueError(f"{logits.shape[0]} rows of logits for {len(idx)} windows")
    _, counts = windows._ranges(sentences)
    asked = np.repeat(np.arange(len(sentences)), counts)  # which asked sentence each row is
    first_row = np.r_[True, asked[1:] != asked[:-1]] if len(idx) else np.zeros(0, bool)
    last_row = np.r_[asked[1:] != asked[:-1], True] if len(idx) else np.zeros(0, bool)
    word_ids = windows.word_ids[idx]
    row, pos = np.nonzero(word_ids >= 0)
    if len(pos) and pos.max() >= logits.shape[1]:
        raise ValueError(f"logits are {logits.shape[1]} wide; token {pos.max()} is scored")
    word = word_ids[row, pos].astype(np.int64)
    far = np.iinfo(np.int64).max
    left = np.where(first_row[row], far, pos)
    right = np.where(last_row[row], far, windows.lengths[idx][row] - 1 - pos)
    offsets = np.r_[0, np.cumsum(np.asarray(words_per_sentence, dtype=np.int64))]
    if len(word) and (word >= np.asarray(words_per_sentence)[asked[row]]).any():
        raise ValueError("words_per_sentence is smaller than the words in the windows")
    key = offsets[asked[row]] + word  # one number per (asked sentence, word)
    order = np.lexsort((row, -np.minimum(left, right), key))  # by word, then most context
    keys, best = np.unique(key[order], return_index=True)
    if len(keys) != offsets[-1]:
        raise ValueError("words_per_sentence counts words that no window holds")
    per_word = np.empty((offsets[-1], logits.shape[2]), dtype=logits.dtype)
    per_word[keys] = logits[row[order[best]], pos[order[best]]]
    return [per_word[offsets[i] : offsets[i + 1]] for i in range(len(sentences))]
