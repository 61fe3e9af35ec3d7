"""Pretrained image classifiers with a new head (classifier.Classifier), of two kinds:

- the packaged ImageNet CNNs (EfficientNet-Lite0, MobileNetV2): plain PyTorch modules from
  image_modeling.py with weights from their packages (packaged_vision.py); exported as
  model.safetensors + config.json + a copy of image_modeling.py, which loads them with torch
  alone;
- Hugging Face image models (`AutoModelForImageClassification`: ViT, ResNet, ConvNeXt) from
  a local folder or the Hub; exported as a save_pretrained folder with its image processor.

Each brings its preprocessing (input size, resize, mean and std): the packaged models their
own, Hugging Face models the one in their preprocessor_config.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.training import image_modeling
from worker.training.image_data import ImageRows
from worker.training.spec import ImageExamples, TrainSpec
from worker.training.text_data import BatchSource


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Convolutions run 1.4–1.8× faster on CPU in channels-last layout (oneDNN's native one;
    measured in bench/image_throughput.py); batches are cut in the same layout
    (image_data.ImageRows). Only 4-D weights change layout, so transformers are unaffected."""
    # memory_format works at runtime; torch's type stubs leave it out of Module.to.
    return model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]


def load_image_classifier(spec: TrainSpec, device: torch.device) -> Any:
    assert isinstance(spec.examples, ImageExamples)
    if spec.architecture is not None:
        return PlainImageClassifier.load(spec, device)
    return HubImageClassifier.load(spec, device)


def _length(model: nn.Module, path: str) -> int:
    stack = model.get_submodule(path)
    assert isinstance(stack, nn.Sequential | nn.ModuleList)
    return len(stack)


# The stack top-k slices, bottom to top, by the checkpoints' module names. The stem stays
# frozen; the last 1×1 convolution before pooling (with its norm) is the top block.
PLAIN_BLOCKS: dict[str, Callable[[nn.Module], list[tuple[str, ...]]]] = {
    "efficientnet_lite0": lambda m: [
        *((f"_blocks.{i}",) for i in range(_length(m, "_blocks"))),
        ("_conv_head", "_bn1"),
    ],
    # features.0 is the stem; features.1..17 the inverted residuals; features.18 the 1×1 conv
    "mobilenet_v2": lambda m: [(f"features.{i}",) for i in range(1, _length(m, "features"))],
}


class _ImageRowsFrom:
    """What both image classifiers share: rows from the job's image files, through the
    model's own preprocessing, which is also what cached features depend on."""

    examples: ImageExamples
    preprocessing: dict[str, Any]
    seed: int
    head_learning_rate: float | None = None  # pooled CNN features are large: the job's rate

    def rows(self, *, augment_idx: frozenset[int]) -> BatchSource:
        return ImageRows(
            self.examples.root,
            self.examples.paths,
            self.preprocessing,
            augment_idx=augment_idx,
            seed=self.seed,
        )

    def feature_identity(self) -> Any:
        return self.preprocessing


class PlainImageClassifier(_ImageRowsFrom):
    """A packaged CNN from image_modeling.py, its ImageNet classifier replaced."""

    def __init__(
        self,
        model: image_modeling.ImageClassifier,
        architecture: str,
        spec: TrainSpec,
        examples: ImageExamples,
    ) -> None:
        self.model = model
        self.architecture = architecture
        self.label_names = list(spec.label_names)
        self.preprocessing = dict(image_modeling.PREPROCESSING[architecture])
        self.examples = examples
        self.seed = spec.params.seed
        self.head_modules: tuple[str, ...] = tuple(model.head_modules)
        self.feature_width = int(model.num_features)

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> PlainImageClassifier:
        from worker.training.packaged_vision import pretrained

        assert spec.architecture is not None and isinstance(spec.examples, ImageExamples)
        model = pretrained(spec.architecture)
        model.reset_classifier(len(spec.label_names))
        on_device(model, device)
        return cls(model, spec.architecture, spec, spec.examples)

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["pixel_values"])

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.forward_features(batch["pixel_values"])

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features)

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        return PLAIN_BLOCKS[self.architecture](self.model)

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        return list(self.model.lora_targets()), None

    def save(self, model: nn.Module, folder: Path) -> None:
        assert isinstance(model, image_modeling.ImageClassifier)
        image_modeling.save_model(
            model, self.architecture, self.label_names, self.preprocessing, folder
        )
        # The architecture's source travels with the weights: torch alone loads them.
        shutil.copyfile(image_modeling.__file__, folder / "modeling.py")

    def outputs_snippet(self) -> str:
        return """import sys; sys.path.insert(0, "model")   # modeling.py: plain PyTorch
import torch
from PIL import Image
from modeling import load_model, preprocess
model, config = load_model("model")
labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
with torch.no_grad():
    outputs = model(preprocess(Image.open("example.jpg"), config["preprocessing"])[None])[0]"""

    def loading_snippet(self) -> str:
        return """import sys; sys.path.insert(0, "model")   # modeling.py: plain PyTorch
from PIL import Image
from modeling import load_model, predict
model, config = load_model("model")
print(predict(model, config, [Image.open("example.jpg")]))   # [{label: probability}]"""


@dataclass(frozen=True)
class HubHead:
    """Where a Hugging Face image architecture's head reads its features from. Module names
    moved between transformers releases (ViT's `encoder.layer` became `layers`, `query`
    became `q_proj`), so blocks and LoRA targets list each name a release has used."""

    blocks: tuple[str, ...]  # attribute paths the stack top-k slices may have
    # Module-name groups LoRA may adapt, the first whose names the model has wins; None: LoRA
    # is not offered for the architecture.
    lora_targets: tuple[tuple[str, ...], ...] | None
    features: Callable[[Any, torch.Tensor], torch.Tensor]  # pixel_values → what the head reads


def _vit_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    # ViTForImageClassification: the classifier reads the layer-normed [CLS] state.
    return model.vit(pixel_values).last_hidden_state[:, 0]


def _pooled(attribute: str) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    def features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
        return getattr(model, attribute)(pixel_values).pooler_output.flatten(1)

    return features


HUB_HEADS: dict[str, HubHead] = {
    "vit": HubHead(
        ("vit.layers", "vit.encoder.layer"),
        (("q_proj", "v_proj"), ("query", "value")),
        _vit_features,
    ),
    "convnext": HubHead(
        ("convnext.encoder.stages",), (("pwconv1", "pwconv2"),), _pooled("convnext")
    ),
    # ResNet is convolutions all through; LoRA on its 1×1 convs is not offered for it.
    "resnet": HubHead(("resnet.encoder.stages",), None, _pooled("resnet")),
}

LORA_UNAVAILABLE = (
    "LoRA is not available for {kind} models here; use transfer_top_k for a similarly small "
    "number of trained parameters, or finetune_full"
)


def hub_preprocessing(folder: Path) -> dict[str, Any]:
    """image_modeling's preprocessing dict from a Hugging Face preprocessor_config.json."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise ValueError(
            f"the model folder {folder.name} has no preprocessor_config.json, so its input "
            "size and normalisation are unknown; save its image processor into the folder"
        )
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(
            f"the preprocessor_config.json of the model folder {folder.name} is not valid "
            f"JSON ({exc}); save its image processor into the folder again"
        ) from exc
    if not isinstance(config, dict):
        raise ValueError(
            f"the preprocessor_config.json of the model folder {folder.name} is not a JSON "
            "object; save its image processor into the folder again"
        )
    size = config.get("size", {})
    crop = config.get("crop_size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if config.get("do_center_crop") and crop:
        # Resize the shorter side, then crop the centre (ResNet, ConvNeXt at 224).
        out, resize = int(crop["height"]), int(size.get("shortest_edge", crop["height"]))
        mode = "crop"
    elif "shortest_edge" in size:
        # ConvNeXt-style processors: below 384 pixels, resize to shortest_edge / crop_pct
        # and crop the centre back to shortest_edge.
        out = int(size["shortest_edge"])
        crop_pct = float(config.get("crop_pct") or 1.0)
        resize = int(out / crop_pct) if out < 384 else out
        mode = "crop"
    else:  # {"height", "width"}: ViT squashes the whole image to that size
        out = resize = int(size["height"])
        mode = "squash"
    rescale = float(config.get("rescale_factor", 1 / 255))
    return {
        "size": out,
        "resize": resize,
        "mode": mode,
        "mean": [float(v) for v in config.get("image_mean", [0.5, 0.5, 0.5])],
        "std": [float(v) for v in config.get("image_std", [0.5, 0.5, 0.5])],
        "rescale": rescale,
        "interpolation": "bilinear",
    }


class HubImageClassifier(_ImageRowsFrom):
    """A Hugging Face `AutoModelForImageClassification` with a new head."""

    def __init__(self, model: Any, spec: TrainSpec, examples: ImageExamples) -> None:
        kind = model.config.model_type
        self.head = HUB_HEADS.get(kind)
        if self.head is None:
            raise ValueError(
                f"Tuneboard does not know where the features of {kind!r} image models are "
                f"(known: {', '.join(sorted(HUB_HEADS))})"
            )
        self.kind = kind
        self.model = model
        self.model_path = Path(spec.model_path)
        self.preprocessing = hub_preprocessing(self.model_path)
        self.examples = examples
        self.seed = spec.params.seed
        self.head_modules: tuple[str, ...] = ("classifier",)
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.preprocessing["size"], self.preprocessing["size"])
            was_training = model.training
            model.eval()
            self.feature_width = int(self.head.features(model, probe.to(model.device)).shape[1])
            model.train(was_training)

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> HubImageClassifier:
        from transformers import AutoModelForImageClassification

        from worker.training.model_files import check_model_folder

        assert isinstance(spec.examples, ImageExamples)
        names = list(spec.label_names)
        if Path(spec.model_path).is_dir():  # no pickles, no code of its own
            check_model_folder(spec.model_path)
        try:
            model = AutoModelForImageClassification.from_pretrained(
                spec.model_path,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={name: i for i, name in enumerate(names)},
                ignore_mismatched_sizes=True,  # the pretrained head has other classes
                use_safetensors=True,  # never unpickle a checkpoint
                trust_remote_code=False,
                dtype=torch.float32,
            )
        except OSError as exc:
            if "safetensors" not in str(exc):
                raise
            raise ValueError(
                f"the model at {spec.model_path} has no safetensors weights "
                "(model.safetensors); pickled checkpoints (pytorch_model.bin) are never loaded"
            ) from exc
        return cls(on_device(model, device), spec, spec.examples)

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(pixel_values=batch["pixel_values"]).logits

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None
        return self.head.features(self.model, batch["pixel_values"])

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(features)

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        assert self.head is not None
        names = dict(self.model.named_modules())
        path = next(p for p in self.head.blocks if p in names)
        return [(f"{path}.{i}",) for i in range(_length(self.model, path))]

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        assert self.head is not None
        if self.head.lora_targets is None:
            raise ValueError(LORA_UNAVAILABLE.format(kind=self.kind))
        leaves = {name.rsplit(".", 1)[-1] for name, _ in self.model.named_modules()}
        group = next((g for g in self.head.lora_targets if set(g) <= leaves), None)
        if group is None:
            raise ValueError(f"no layer LoRA knows how to adapt in this {self.kind} model")
        return list(group), None

    def save(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(folder)  # type: ignore[operator]  # safetensors, id2label
        shutil.copyfile(
            self.model_path / "preprocessor_config.json", folder / "preprocessor_config.json"
        )

    def outputs_snippet(self) -> str:
        return """import json
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification
config = json.load(open("model/config.json"))
labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
processor = AutoImageProcessor.from_pretrained("model")
model = AutoModelForImageClassification.from_pretrained("model").eval()
with torch.no_grad():
    outputs = model(**processor(Image.open("example.jpg"), return_tensors="pt")).logits[0]"""

    def loading_snippet(self) -> str:
        return """from transformers import pipeline
classify = pipeline("image-classification", model="model")
print(classify("example.jpg"))"""
