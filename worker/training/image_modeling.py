"""Image classifiers in plain PyTorch: EfficientNet-Lite0 and MobileNetV2, their preprocessing,
and the export format (config.json + model.safetensors).

This file is self-contained on purpose: it imports only torch, numpy, Pillow, safetensors and
the standard library, because it is copied verbatim into every exported model folder as
`modeling.py`. An export therefore loads without Tuneboard:

    import sys
    sys.path.insert(0, "path/to/export")  # the folder holding modeling.py
    from PIL import Image
    from modeling import load_model, predict

    model, config = load_model("path/to/export")
    print(predict(model, config, [Image.open("photo.jpg")]))  # [{"cat": 0.97, "dog": 0.03}]

The module and parameter names match the published checkpoints (lukemelas-style
`efficientnet-lite0-57934424.pth`, torchvision's `mobilenet_v2-b0353104.pth`), so those load
with `load_state_dict(strict=True)`; loading them is done elsewhere, as it needs the packages
that ship them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, ImageSequence
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Evaluation preprocessing the checkpoints were trained for: shorter side to `resize`, centre
# crop `size` (224/256 = 0.875, the crop ratio of both reference pipelines), then normalise.
PREPROCESSING: dict[str, dict[str, Any]] = {
    # EfficientNet-Lite normalises 0..255 pixels with mean 127 and std 128, i.e. to [-1, 1];
    # expressed on 0..1 pixels that is mean 127/255 and std 128/255.
    "efficientnet_lite0": {
        "size": 224,
        "resize": 256,
        "mean": [127 / 255] * 3,
        "std": [128 / 255] * 3,
        "interpolation": "bilinear",
    },
    "mobilenet_v2": {
        "size": 224,
        "resize": 256,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    },
}

_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _new_linear(in_features: int, out_features: int) -> nn.Linear:
    # Small weights and zero bias: a fresh head starts near uniform probabilities (loss ~ log n)
    # instead of confidently wrong, which is what transfer learning wants.
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer


def _init_weights(model: nn.Module) -> None:
    # torchvision's initialisation; it only matters for weights no checkpoint overwrites.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


class ImageClassifier(nn.Module):
    """What training strategies need from an image network, the same for every architecture.

    - `blocks`: the stack of residual blocks, bottom to top; top-k fine-tuning trains the last k.
    - `head_modules`: attribute paths of the modules that train on frozen features.
    - `forward_features(x)`: (B, num_features) pooled features, what the classifier reads.
    - `forward_head(features)`: logits from those features (dropout + linear).
    """

    num_features: int
    head_modules: tuple[str, ...]

    @property
    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def classifier_layer(self) -> nn.Linear:
        """The final Linear layer."""
        raise NotImplementedError

    def _set_classifier_layer(self, layer: nn.Linear) -> None:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_classes(self) -> int:
        return self.classifier_layer.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised final Linear for `num_classes`, under the same parameter names."""
        old = self.classifier_layer
        layer = _new_linear(self.num_features, num_classes)
        self._set_classifier_layer(layer.to(device=old.weight.device, dtype=old.weight.dtype))

    def lora_targets(self) -> list[str]:
        """Names of the pointwise convolutions (1x1, groups 1): PEFT's LoRA adapts a Conv2d
        with a rank-r pair of convolutions, which for a 1x1 kernel is exactly a low-rank
        update of a channel-mixing matrix. Depthwise convolutions have no matrix to factor."""
        return [
            name
            for name, module in self.named_modules()
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
        ]


# --------------------------------------------------------------------------- EfficientNet-Lite0


def _same_padding(size: int, kernel: int, stride: int) -> int:
    # TensorFlow "SAME": output = ceil(size / stride); the total padding that achieves it.
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding, computed from the input size at run time.

    With stride 2 on an even size the padding total is odd and TF puts the extra pixel at the
    bottom/right; PyTorch's symmetric padding would shift every sample by a pixel against what
    the TF-trained weights expect. At 224 this equals the reference's static padding, and
    unlike it stays correct at other sizes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_tf_same(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Conv2d:
    if stride == 1:
        # With stride 1 TF's padding is k - 1, split evenly for odd k: a plain Conv2d (and a
        # plain nn.Conv2d 1x1 is what PEFT's LoRA recognises).
        return nn.Conv2d(
            in_channels, out_channels, kernel, 1, kernel // 2, groups=groups, bias=False
        )
    return Conv2dSame(in_channels, out_channels, kernel, stride, groups=groups, bias=False)


def _tf_batch_norm(channels: int) -> nn.BatchNorm2d:
    # TF's decay 0.99 is PyTorch's momentum 0.01; eps as trained.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    # Stochastic depth as in the reference: drop the whole residual branch per sample.
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.floor(keep + torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (removed in the Lite variants)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand: int,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _tf_batch_norm(hidden)
        self._depthwise_conv = _conv_tf_same(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _tf_batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _tf_batch_norm(out_channels)
        self._swish = nn.ReLU6()  # the reference's name; Lite uses ReLU6 to quantise well
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_rate = drop_rate  # stochastic depth, while training

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._swish(self._bn0(self._expand_conv(x)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = _drop_path(x, self.drop_rate, self.training) + inputs
        return x


# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage, from
# TF's efficientnet_lite_builder; Lite0 scales neither width nor depth.
_LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class EfficientNetLite0(ImageClassifier):
    """EfficientNet-Lite0 with the reference's module names (`_conv_stem`, `_blocks.N`, `_fc`)."""

    head_modules = ("_fc",)

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.2
    ) -> None:
        super().__init__()
        self.num_features = 1280
        self._conv_stem = _conv_tf_same(3, 32, 3, stride=2)
        self._bn0 = _tf_batch_norm(32)
        self._blocks = nn.ModuleList()
        total = sum(stage[0] for stage in _LITE0_STAGES)
        for repeats, kernel, stride, expand, in_channels, out_channels in _LITE0_STAGES:
            for i in range(repeats):
                # Only a stage's first block changes stride and width; deeper blocks are
                # dropped more often, as in the reference.
                self._blocks.append(
                    MBConvBlock(
                        in_channels if i == 0 else out_channels,
                        out_channels,
                        kernel,
                        stride if i == 0 else 1,
                        expand,
                        drop_rate=drop_connect_rate * len(self._blocks) / total,
                    )
                )
        self._conv_head = nn.Conv2d(320, self.num_features, 1, bias=False)
        self._bn1 = _tf_batch_norm(self.num_features)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)
        self._swish = nn.ReLU6()
        _init_weights(self)

    @property
    def blocks(self) -> nn.ModuleList:
        return self._blocks

    @property
    def classifier_layer(self) -> nn.Linear:
        return self._fc

    def _set_classifier_layer(self, layer: nn.Linear) -> None:
        self._fc = layer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._swish(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))


# --------------------------------------------------------------------------------- MobileNetV2


class ConvBNReLU(nn.Sequential):
    """torchvision's Conv2dNormActivation: keys `N.0.weight` (conv) and `N.1.*` (norm)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride,
                (kernel - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(in_channels, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


# (expand ratio, output channels, repeats, first stride) per stage, as in torchvision.
_MOBILENET_V2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(ImageClassifier):
    """torchvision's MobileNetV2 (width 1.0): `features` holds the stem (0), the 17 inverted
    residual blocks (1..17) and the 1x1 head conv (18); `classifier` is Dropout + Linear."""

    head_modules = ("classifier",)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_features = 1280
        layers: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
        in_channels = 32
        for expand, out_channels, repeats, stride in _MOBILENET_V2_STAGES:
            for i in range(repeats):
                layers.append(
                    InvertedResidual(in_channels, out_channels, stride if i == 0 else 1, expand)
                )
                in_channels = out_channels
        layers.append(ConvBNReLU(in_channels, self.num_features, kernel=1))
        # One Sequential, as torchvision has it, so the checkpoint's `features.N` keys match.
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.num_features, num_classes)
        )
        _init_weights(self)

    @property
    def blocks(self) -> nn.ModuleList:
        """A view of `features[1:-1]`, the inverted residual blocks: a new, unregistered
        ModuleList each call, so the modules keep their `features.N` names."""
        return nn.ModuleList(list(self.features)[1:-1])

    @property
    def classifier_layer(self) -> nn.Linear:
        layer = self.classifier[1]
        assert isinstance(layer, nn.Linear)
        return layer

    def _set_classifier_layer(self, layer: nn.Linear) -> None:
        self.classifier[1] = layer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


ARCHITECTURES: dict[str, type[ImageClassifier]] = {
    "efficientnet_lite0": EfficientNetLite0,
    "mobilenet_v2": MobileNetV2,
}


def build(architecture: str, num_classes: int) -> ImageClassifier:
    """An untrained network of a known architecture with a `num_classes`-way classifier."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[architecture](num_classes=num_classes)


# ------------------------------------------------------------------------------- preprocessing


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image as a viewer would show it: first frame of an animation, EXIF
    rotation applied, transparency composited on white, 16-bit grey scaled down (not clipped)."""
    if getattr(image, "is_animated", False):
        image = next(ImageSequence.Iterator(image))
    image = ImageOps.exif_transpose(image)  # phone photos are often stored sideways
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # Pillow's own conversion clips these to 255, turning most 16-bit photos white. Older
        # Pillows open 16-bit PNGs as "I", so "I" and "F" count as 16-bit when they exceed 255.
        grey = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or grey.max(initial=0.0) > 255:
            grey = grey / 257.0
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))  # mode L
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels keep whatever colour they happen to store (often black); on
        # white they look as they do on a web page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess(image: Image.Image, config: dict[str, Any]) -> torch.Tensor:
    """A (3, size, size) float32 tensor, deterministically: RGB, shorter side resized to
    `resize`, centre crop `size`, scaled to 0..1, normalised with `mean` and `std`.
    With `"mode": "squash"` (ViT's processors) the whole image is resized to size × size
    instead, aspect ratio not kept."""
    image = to_rgb(image)
    size, resize = int(config["size"]), int(config["resize"])
    resample = _RESAMPLING[config.get("interpolation", "bilinear")]
    if config.get("mode") == "squash":
        return normalize(image.resize((size, size), resample), config)
    if resize < size:
        raise ValueError(f"resize ({resize}) must be at least the crop size ({size})")
    width, height = image.size
    # torchvision's rounding of the longer side, so crops match its Resize + CenterCrop.
    if width <= height:
        new_size = (resize, int(resize * height / width))
    else:
        new_size = (int(resize * width / height), resize)
    image = image.resize(new_size, resample)
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return normalize(image.crop((left, top, left + size, top + size)), config)


def normalize(image: Image.Image, config: dict[str, Any]) -> torch.Tensor:
    """An RGB image, already at its final size, as a (3, H, W) float32 tensor: pixels scaled
    to 0..1, then normalised with `mean` and `std`. The last step of `preprocess`, shared
    with training-time augmentation."""
    rescale = float(config.get("rescale", 1 / 255))  # 0..255 to 0..1 unless a model says else
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) * rescale)
    mean = torch.tensor(config["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(config["std"], dtype=torch.float32)[:, None, None]
    return ((pixels.permute(2, 0, 1) - mean) / std).contiguous()


# ---------------------------------------------------------------------------------- the export


def save_model(
    model: ImageClassifier,
    architecture: str,
    label_names: Sequence[str],
    preprocessing: dict[str, Any],
    folder: str | Path,
) -> None:
    """Write `config.json` and `model.safetensors` into `folder` (created if missing).

    `model` must be a plain network (merge any LoRA adapters first) whose classifier has one
    output per label."""
    if not isinstance(model, ARCHITECTURES[architecture]):
        raise TypeError(f"model is a {type(model).__name__}, not a {architecture}")
    if model.num_classes != len(label_names):
        raise ValueError(f"{model.num_classes} outputs but {len(label_names)} label names")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": architecture,
        "num_classes": len(label_names),
        "id2label": {str(i): name for i, name in enumerate(label_names)},
        "preprocessing": preprocessing,
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    # safetensors wants contiguous CPU tensors that share no memory.
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def load_model(folder: str | Path) -> tuple[ImageClassifier, dict[str, Any]]:
    """The network (in eval mode, on the CPU) and its config from an export folder."""
    folder = Path(folder)
    config: dict[str, Any] = json.loads((folder / CONFIG_NAME).read_text())
    model = build(config["architecture"], int(config["num_classes"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
    return model.eval(), config


def predict(
    model: nn.Module, config: dict[str, Any], images: Sequence[Image.Image], batch_size: int = 32
) -> list[dict[str, float]]:
    """For each image, the probability of every label, by name."""
    labels = [config["id2label"][str(i)] for i in range(int(config["num_classes"]))]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off, batch norm on its running statistics
    results: list[dict[str, float]] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.stack(
                    [
                        preprocess(im, config["preprocessing"])
                        for im in images[start : start + batch_size]
                    ]
                )
                probabilities = model(batch.to(device)).float().softmax(dim=-1).cpu().tolist()
                results += [dict(zip(labels, row, strict=True)) for row in probabilities]
    finally:
        model.train(was_training)
    return results
