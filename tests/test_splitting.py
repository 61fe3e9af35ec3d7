"""The stratified split: same seed, same rows; every class reaches every part it can."""

from __future__ import annotations

from collections import Counter

import pytest

from worker.training.tasks.splitting import Split, stratified_split


def labels_of(counts: dict[str, int]) -> list[str]:
    # Interleaved, so that no class sits in one block of indices.
    pool = [label for label, n in counts.items() for _ in range(n)]
    return pool[::2] + pool[1::2]


def check_partition(split: Split, n: int) -> None:
    parts = [split.train, split.validation, split.test]
    assert all(part == sorted(part) for part in parts)
    everything = [i for part in parts for i in part]
    assert sorted(everything) == list(range(n))  # disjoint and covering


def test_same_seed_same_split() -> None:
    labels = labels_of({"a": 50, "b": 30, "c": 7})
    assert stratified_split(labels, seed=3) == stratified_split(labels, seed=3)
    assert stratified_split(labels, seed=3) != stratified_split(labels, seed=4)


def test_split_does_not_depend_on_label_order_of_appearance() -> None:
    first = stratified_split(["a", "b"] * 20, seed=1)
    assert first == stratified_split(["a", "b"] * 20, seed=1)
    check_partition(first, 40)


def test_stratified_sizes() -> None:
    labels = labels_of({"a": 100, "b": 50, "c": 10})
    split = stratified_split(labels, seed=0)
    check_partition(split, len(labels))
    for part, expected in (
        (split.validation, {"a": 10, "b": 5, "c": 1}),
        (split.test, {"a": 10, "b": 5, "c": 1}),
    ):
        assert Counter(labels[i] for i in part) == expected
    assert Counter(labels[i] for i in split.train) == {"a": 80, "b": 40, "c": 8}


def test_small_classes() -> None:
    labels = labels_of({"one": 1, "two": 2, "three": 3, "big": 40})
    split = stratified_split(labels, seed=5)
    check_partition(split, len(labels))
    in_train = Counter(labels[i] for i in split.train)
    assert in_train["one"] == 1
    assert in_train["two"] == 2
    assert in_train["three"] == 1
    assert Counter(labels[i] for i in split.validation)["three"] == 1
    assert Counter(labels[i] for i in split.test)["three"] == 1


def test_zero_fractions() -> None:
    labels = labels_of({"a": 20, "b": 20})
    no_validation = stratified_split(labels, seed=1, validation_fraction=0)
    assert no_validation.validation == []
    assert len(no_validation.test) == 4
    check_partition(no_validation, 40)
    everything_trains = stratified_split(labels, seed=1, validation_fraction=0, test_fraction=0)
    assert everything_trains.train == list(range(40))


def test_large_fractions_keep_a_training_row() -> None:
    labels = labels_of({"a": 4, "b": 3})
    split = stratified_split(labels, seed=2, validation_fraction=0.45, test_fraction=0.45)
    check_partition(split, 7)
    assert Counter(labels[i] for i in split.train) == {"a": 1, "b": 1}


def test_empty_labels() -> None:
    assert stratified_split([], seed=0) == Split([], [], [])


@pytest.mark.parametrize(("validation", "test"), [(-0.1, 0.1), (1.0, 0.0), (0.5, 0.5)])
def test_bad_fractions(validation: float, test: float) -> None:
    with pytest.raises(ValueError):
        stratified_split(["a", "b"], seed=0, validation_fraction=validation, test_fraction=test)
