"""Images for the predict worker: read one at a time, shrunk to the model's input at once.

The predict worker lives long and keeps what it allocates (worker/allocator.py), so what a
batch of images may cost is bounded here, not left to the sizes of the files people send:
- an image is refused, with the reason in its CSV row, when decoding it would take more than
  TUNEBOARD_MAX_PREDICT_IMAGE_PIXELS. A JPEG over that is decoded at 1/2 to 1/8 scale instead
  (app/datasets/image_reading.py), so large photos still get an answer; PNG, WebP, BMP and
  GIF cannot be decoded reduced, so theirs is the cap;
- each image is decoded, turned into the model's input tensor (image_modeling.preprocess) and
  dropped before the next is opened: only small tensors are kept;
- tensors go to the model in batches of a bounded number of values, so a model with a larger
  input gets fewer images a batch.
Images at or under the cap are preprocessed exactly as the export's `modeling.py` does, so the
playground answers as the download will.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from app.datasets.image_reading import draft
from app.datasets.images import ALLOWED_FORMATS, ImageRejected, short_reason
from worker.training.image_modeling import preprocess

# Input values per forward pass: 32 images of 3×224×224, about 19 MB of float32.
BATCH_VALUES = 32 * 3 * 224 * 224


def input_side(preprocessing: dict[str, Any]) -> int:
    """The shorter side an image is resized to before the model's centre crop."""
    return max(int(preprocessing["size"]), int(preprocessing.get("resize", 0)))


def read_image(path: Path, preprocessing: dict[str, Any], max_pixels: int) -> torch.Tensor:
    """The model's input tensor for one image file; ImageRejected with the reason when it is
    not a usable image or too large to decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's size warnings: our cap is what counts
        try:
            with Image.open(path) as image:
                return _tensor(image, preprocessing, max_pixels)
        except ImageRejected:
            raise
        except Image.DecompressionBombError:
            raise ImageRejected(
                f"the image has more pixels than can be opened safely; the limit for "
                f"prediction is {max_pixels:,} pixels, so scale it down"
            ) from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, ...
            raise ImageRejected(f"not a readable image: {short_reason(exc, path)}") from exc


def _tensor(image: Image.Image, preprocessing: dict[str, Any], max_pixels: int) -> torch.Tensor:
    fmt = image.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"format {fmt} is not supported; convert it to JPEG or PNG")
    width, height = image.size
    if width * height > max_pixels:
        # Only a JPEG over the cap is drafted: under it, decoding is exactly the export's.
        decoded = draft(image, input_side(preprocessing))
        if decoded[0] * decoded[1] > max_pixels:
            raise ImageRejected(
                f"{width}×{height} pixels is over the {max_pixels:,}-pixel limit for "
                f"prediction; scale it down"
                + ("" if fmt == "JPEG" else " (or send it as a JPEG, which is read reduced)")
            )
    image.seek(0)  # the first frame of an animated GIF
    return preprocess(image, preprocessing)


def batches(
    tensors: Iterator[tuple[Any, torch.Tensor]], max_values: int = BATCH_VALUES
) -> Iterator[list[tuple[Any, torch.Tensor]]]:
    """(key, tensor) pairs grouped so a group holds at most `max_values` input values (and
    always at least one tensor)."""
    group: list[tuple[Any, torch.Tensor]] = []
    values = 0
    for key, tensor in tensors:
        if group and values + tensor.numel() > max_values:
            yield group
            group, values = [], 0
        group.append((key, tensor))
        values += tensor.numel()
    if group:
        yield group
