"""Images as batches: decoded, resized and normalised when a batch is cut, with random
resized crops and flips for training rows.

Images are read from disk batch by batch rather than held decoded (5,000 photos at 224×224
would be 3 GB of floats). Decoding and resizing run on a small thread pool: Pillow releases
the GIL while it works, so the threads overlap. Evaluation and feature extraction use the
model's own deterministic preprocessing (image_modeling.preprocess), the same function the
export's `modeling.py` and the playground use.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from worker.training.image_modeling import normalize, preprocess, to_rgb

# Crops cover 35–100 % of the image: milder than ImageNet pre-training's 8 %, because
# fine-tuning runs a few epochs on small datasets, and a crop of 8 % often loses the object.
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
DECODE_THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Crop:
    """One random resized crop and flip, drawn ahead of decoding so the draws (and hence
    a run) do not depend on which thread finishes first."""

    scale: float
    log_ratio: float
    x: float  # where the crop sits in the room left, 0..1
    y: float
    flip: bool


def random_resized_crop(image: Image.Image, crop: Crop, size: int) -> Image.Image:
    width, height = image.size
    area = width * height * crop.scale
    ratio = math.exp(crop.log_ratio)
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    left = round(crop.x * (width - w))
    top = round(crop.y * (height - h))
    out = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if crop.flip else out


def augmented(path: Path, crop: Crop, preprocessing: dict[str, Any]) -> torch.Tensor:
    with Image.open(path) as image:
        rgb = to_rgb(image)
    return normalize(random_resized_crop(rgb, crop, int(preprocessing["size"])), preprocessing)


def plain(path: Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    with Image.open(path) as image:
        return preprocess(image, preprocessing)


@dataclass
class ImageRows:
    """A BatchSource over image files: every row has "length" 1 (images are resized to
    one shape, so there is no padding to save by grouping)."""

    root: Path
    paths: list[str]
    preprocessing: dict[str, Any]
    augment_idx: frozenset[int] = frozenset()
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)  # augmentation draws; checkpointed
    _pool: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")

    @property
    def lengths(self) -> np.ndarray:
        return np.ones(len(self.paths), dtype=np.int64)

    def _crop(self) -> Crop:
        lo, hi = CROP_SCALE
        return Crop(
            scale=float(self.rng.uniform(lo, hi)),
            log_ratio=float(self.rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))),
            x=float(self.rng.random()),
            y=float(self.rng.random()),
            flip=bool(self.rng.random() < 0.5),
        )

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        jobs = []
        for row in idx.tolist():
            path = self.root / self.paths[row]
            if row in self.augment_idx:
                jobs.append(self._pool.submit(augmented, path, self._crop(), self.preprocessing))
            else:
                jobs.append(self._pool.submit(plain, path, self.preprocessing))
        pixels = torch.stack([job.result() for job in jobs])
        # The layout the models are kept in (image_model.on_device).
        return {"pixel_values": pixels.contiguous(memory_format=torch.channels_last)}
