"""One registry of explanation methods: each method is one file here that registers itself.

As in pytorch-grad-cam, a method is a small object: a name, a title for panels, whether it is
cheap enough for every frame, what it explains (the anomaly score or the defect-type head), and
one ``compute(ctx)`` that returns a map at the model's input size. Adding a method is adding a
file in this package that calls ``register``; the CLI (``inspector explain --method``,
``inspector explain-methods``), the station (``every_frame_method``) and the explanation report
all read this registry, so nothing else changes.

Files are imported on first use, not at import of this package, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import torch

    from models.explain import DefectHead
    from models.patchcore import PatchCore

Target = Literal["score", "defect"]


@dataclass
class MethodContext:
    """Everything a method may need for one frame, already at the model's input size."""

    model: PatchCore
    x: torch.Tensor  # (1, 3, S, S) in [0, 1]
    head: DefectHead | None = None
    class_index: int | None = None  # the defect class to explain (the head's best guess)
    layer: str | None = None  # Grad-CAM's stage; None: the deepest PatchCore reads
    reference: torch.Tensor | None = None  # (R, 3, S, S) good images: the in-distribution "off"
    pass_maps: dict[str, torch.Tensor] = field(default_factory=dict)  # what the inspection pass gave
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"samples": 64} for LIME/SHAP
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def side(self) -> int:
        return int(self.x.shape[-1])

    def setting(self, key: str, default: Any) -> Any:
        return self.settings.get(key, default)

    def baseline(self) -> torch.Tensor:
        """The "off" image for perturbation methods: a good image where given, else a light blur.

        Never black: a black patch is itself an anomaly to PatchCore (see models/explain/attribution.py).
        """
        if self.reference is not None:
            return self.reference[:1].to(self.x.device)
        from models.explain import blur_images

        return blur_images(self.x, sigma=max(1.0, self.side / 56))

    def image_uint8(self) -> np.ndarray:
        """The input as an RGB uint8 array (what the superpixel segmentation reads)."""
        import numpy as np

        return (self.x[0].detach().permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)

    def forward(self, target: Target) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function a method explains: images -> score (B,) or defect logits (B, K)."""
        from models.explain import DefectTarget

        if target == "score":
            return self.model.score
        if self.head is None:
            raise ValueError("a defect-head explanation needs the model's defect classifier")
        return DefectTarget(self.model, self.head)

    def class_target(self, target: Target) -> int | None:
        """Captum's ``target``: the defect class for the head, None for the (scalar) score."""
        return self.class_index if target == "defect" else None


@dataclass(frozen=True)
class Method:
    """One explanation method as the rest of inspector sees it."""

    name: str
    title: str  # panel title: what the map shows
    compute: Callable[[MethodContext], torch.Tensor]  # (H, W) or (1, H, W) at the input size
    target: Target = "score"
    fast: bool = False  # cheap enough to run on every frame of a live stream
    shared_pass: bool = False  # made by the inspection pass itself (anomaly map, Grad-CAM)
    cost: str = ""  # what it costs, in passes, for the help text
    reference: str = ""  # the paper or library it follows


_REGISTRY: dict[str, Method] = {}
_loaded = False


def register(method: Method) -> Method:
    """Adds a method; a second method under the same name is a programming error."""
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        raise ValueError(f"explanation method '{method.name}' is registered twice")
    _REGISTRY[method.name] = method
    return method


def register_score_and_defect(
    name: str,
    title: str,
    run: Callable[[MethodContext, Target], torch.Tensor],
    *,
    cost: str,
    reference: str,
) -> None:
    """Registers a method twice: ``name`` of the anomaly score and ``defect-name`` of the defect type.

    ``title`` holds ``{what}``, filled with "the score" or "the defect type".
    """
    for target, full_name, what in (("score", name, "the score"), ("defect", f"defect-{name}", "the defect type")):
        register(
            Method(
                full_name,
                title.format(what=what),
                lambda ctx, t=target: run(ctx, t),  # type: ignore[misc]
                target=target,  # type: ignore[arg-type]
                cost=cost,
                reference=reference,
            )
        )


def _load() -> None:
    """Imports every method file in this package once (each registers itself)."""
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def methods() -> dict[str, Method]:
    """All registered methods by name, in a stable order (pass methods first, then by name)."""
    _load()
    order = sorted(_REGISTRY.values(), key=lambda m: (not m.shared_pass, m.target != "score", m.name))
    return {m.name: m for m in order}


def names() -> tuple[str, ...]:
    return tuple(methods())


def get(name: str) -> Method:
    """The method by name; the error names the known ones."""
    found = methods().get(name)
    if found is None:
        raise KeyError(f"unknown explanation method '{name}'; choose from {', '.join(names())}")
    return found


def fast_names() -> tuple[str, ...]:
    """Methods cheap enough for every frame."""
    return tuple(n for n, m in methods().items() if m.fast)


def every_frame_method() -> str:
    """The method the station draws on every frame: the fast one of the inspection pass."""
    return next(n for n, m in methods().items() if m.fast and m.shared_pass and n != "anomaly")
