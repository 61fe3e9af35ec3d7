"""A stratified train/validation/test split that depends only on the labels and the seed.

Every job of a comparison trains and is scored on the same rows, so the split must come out
the same on any machine, in any process: one ``random.Random(seed)``, classes in sorted order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    train: list[int]  # indices into the examples, each list sorted
    validation: list[int]
    test: list[int]


def stratified_split(
    labels: Sequence[str],
    *,
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    """Split each class on its own so that rare classes reach validation and test too."""
    for name, fraction in (("validation", validation_fraction), ("test", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{name}_fraction must be in [0, 1), got {fraction}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation_fraction + test_fraction must leave rows for training")

    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)

    rng = random.Random(seed)
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for label in sorted(by_class):
        indices = by_class[label]
        rng.shuffle(indices)
        n_val, n_test = _sizes(len(indices), validation_fraction, test_fraction)
        validation += indices[:n_val]
        test += indices[n_val : n_val + n_test]
        train += indices[n_val + n_test :]
    return Split(sorted(train), sorted(validation), sorted(test))


def _sizes(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of a class of ``n`` go to validation and test.

    A class of 3 or more gets at least one row in each held-out part that is asked for (else
    its score there is undefined); every class keeps at least one row to train on.
    """
    floor_val = 1 if n >= 3 and validation_fraction > 0 else 0
    floor_test = 1 if n >= 3 and test_fraction > 0 else 0
    n_val = max(floor_val, round(n * validation_fraction))
    n_test = max(floor_test, round(n * test_fraction))
    while n_val + n_test > n - 1:
        if n_test > floor_test and (n_test >= n_val or n_val <= floor_val):
            n_test -= 1
        elif n_val > floor_val:
            n_val -= 1
        else:  # only when n < 3, where both floors are 0
            break
    return n_val, n_test
