"""Open-set gate for the defect head: "unknown type" instead of forcing a known one.

A linear head always names one of its classes, even for a defect it has never seen. The gate
keeps, per defect type, the prototype (mean) of its examples' standardised pooled features and
one radius: the ``quantile`` of the leave-one-out distances of every example to its own type's
prototype. A frame whose features lie farther than that from the prototype of the type the head
picks is an unknown type. With quantile 0.95, about 5% of a known type's own examples would be
called unknown in leave-one-out: a stated rate, like the target false-reject rate of the
threshold, not a value tuned on test images.

A type with fewer than ``min_examples`` examples is pending: it is never predicted (too few to
trust), and a frame nearest to it is reported as unknown, with the pending type as a hint.

``descriptor`` names the features the gate was fitted on (``defect_classifier.DESCRIPTORS``):
whole-image pooled (the default, and what every gate saved before it was recorded) or
defect-centred. The saved JSON's ``gate_version`` says which fields to expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.explain.defect_classifier import DEFECT_CENTRED, DESCRIPTORS, POOLED

UNKNOWN = "unknown type"
GATE_VERSION = 2  # 1: no descriptor recorded (whole-image pooled features); 2: ``descriptor`` field
# The radius quantile per descriptor, chosen on pillQC with dirt as the new type
# (``scripts/bench_type_gate.py``): the best worst-seed accuracy naming the new type while
# version 1 still calls at least 90% of it "unknown type".
DEFAULT_QUANTILE = {POOLED: 0.95, DEFECT_CENTRED: 0.99}


@dataclass
class TypeDecision:
    """The gate's answer for one frame: a type name or ``UNKNOWN``, with the distance behind it."""

    name: str
    distance: float
    nearest: str  # the type whose prototype is nearest (a pending one included)


class TypeGate:
    """Prototypes and one radius over standardised pooled features; tensors and names only."""

    def __init__(
        self,
        classes: Sequence[str],
        counts: Sequence[int],
        mean: torch.Tensor,
        scale: torch.Tensor,
        prototypes: torch.Tensor,
        radius: float,
        min_examples: int,
        descriptor: str = POOLED,
    ) -> None:
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"unknown defect descriptor {descriptor!r}; known: {list(DESCRIPTORS)}")
        self.descriptor = descriptor
        self.classes = list(classes)
        self.counts = [int(c) for c in counts]
        self.mean, self.scale, self.prototypes = mean.float(), scale.float(), prototypes.float()
        self.radius = float(radius)
        self.min_examples = int(min_examples)

    @property
    def ready(self) -> list[str]:
        """Types with enough examples to be named."""
        return [c for c, n in zip(self.classes, self.counts, strict=True) if n >= self.min_examples]

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        labels: Sequence[str],
        *,
        quantile: float = 0.95,
        min_examples: int = 5,
        descriptor: str = POOLED,
    ) -> TypeGate:
        """Fits prototypes and the radius from (N, F) descriptors with one type name per row."""
        if features.ndim != 2 or features.shape[0] != len(labels) or not len(labels):
            raise ValueError("features must be (N, F) with one type name per row, N >= 1")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        classes = sorted(set(labels))
        x = features.float()
        mean, std = x.mean(0), x.std(0, unbiased=False)
        scale = torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.zeros_like(std))
        z = (x - mean) * scale
        protos, counts, loo = [], [], []
        for c in classes:
            zc = z[torch.tensor([lab == c for lab in labels])]
            n = zc.shape[0]
            protos.append(zc.mean(0))
            counts.append(n)
            if n >= 2:  # leave-one-out: each example against the prototype of the others
                others = (zc.sum(0, keepdim=True) - zc) / (n - 1)
                loo.append(torch.linalg.vector_norm(zc - others, dim=1))
        if not loo:
            raise ValueError("the gate needs at least one type with two or more examples")
        radius = float(torch.quantile(torch.cat(loo), quantile))
        return cls(classes, counts, mean, scale, torch.stack(protos), radius, min_examples, descriptor)

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, K) distances of standardised features to every type's prototype."""
        z = (features.float() - self.mean) * self.scale
        return torch.cdist(z, self.prototypes)

    def decide(
        self, features: torch.Tensor, head_logits: torch.Tensor | None = None, head_classes: Sequence[str] = ()
    ) -> list[TypeDecision]:
        """One decision per row: the head's pick (or the nearest ready type) if within the radius."""
        d = self.distances(features)
        ready = torch.tensor([c in self.ready for c in self.classes])
        out = []
        for i in range(d.shape[0]):
            nearest = self.classes[int(d[i].argmin())]
            pick: int | None = None
            if head_logits is not None and head_classes:
                order = head_logits[i].argsort(descending=True).tolist()
                names = [head_classes[j] for j in order if head_classes[j] in self.ready]
                pick = self.classes.index(names[0]) if names else None
            elif bool(ready.any()):
                pick = int(torch.where(ready, d[i], torch.full_like(d[i], float("inf"))).argmin())
            if pick is None:
                out.append(TypeDecision(UNKNOWN, float(d[i].min()), nearest))
                continue
            dist = float(d[i, pick])
            name = self.classes[pick] if dist <= self.radius and nearest in self.ready else UNKNOWN
            out.append(TypeDecision(name, dist, nearest))
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "mean": self.mean.contiguous(),
            "scale": self.scale.contiguous(),
            "prototypes": self.prototypes.contiguous(),
        }

    def to_json(self) -> dict[str, object]:
        return {
            "gate_version": GATE_VERSION,
            "descriptor": self.descriptor,
            "classes": self.classes,
            "counts": self.counts,
            "radius": self.radius,
            "min_examples": self.min_examples,
        }

    @classmethod
    def from_saved(cls, doc: dict[str, object], tensors: dict[str, torch.Tensor]) -> TypeGate:
        """A gate from ``to_json`` and ``tensors``; a gate saved before version 2 read pooled features."""
        version = doc.get("gate_version", 1)
        if version not in (1, GATE_VERSION):
            raise ValueError(f"type gate version {version!r} is newer than this program reads (up to {GATE_VERSION})")
        descriptor = str(doc["descriptor"]) if version == GATE_VERSION else POOLED
        classes = list(doc["classes"])  # type: ignore[call-overload]
        protos = tensors["prototypes"]
        if protos.shape[0] != len(classes) or tensors["mean"].shape != (protos.shape[1],):
            raise ValueError("type gate tensors do not match its class list")
        return cls(
            classes,
            list(doc["counts"]),  # type: ignore[call-overload]
            tensors["mean"],
            tensors["scale"],
            protos,
            float(doc["radius"]),  # type: ignore[arg-type]
            int(doc["min_examples"]),  # type: ignore[call-overload]
            descriptor,
        )
