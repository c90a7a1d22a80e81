"""The PatchCore module: embed, fit, predict, and a differentiable score for explanations.

Symbols follow the paper: the memory bank M holds locally aware patch features phi_{i,j}; a
test patch's score is its distance to the nearest m* in M; the image score s is the largest
patch score, reweighted by how isolated m* is among its own neighbours N_b(m*) (Eq. 7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones import BackboneSpec, build_feature_extractor
from models.components.coreset import greedy_coreset
from models.components.nearest import nearest_neighbours, squared_norms
from models.patchcore.anomaly_map import anomaly_map

ProgressFn = Callable[[str, int, int], None]


@dataclass
class PatchCoreConfig:
    """Everything that defines a PatchCore model apart from its memory bank."""

    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("blocks.1", "blocks.2")
    input_size: int = 224
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    num_neighbours: int = 9
    sigma: float = 4.0
    feature_stride: int | None = None  # None: the first layer's resolution
    seed: int = 0
    weights: str | None = None
    pretrained: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> PatchCoreConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown PatchCore settings: {sorted(unknown)}")
        kw = dict(d)
        if "layers" in kw:
            kw["layers"] = tuple(kw["layers"])  # type: ignore[arg-type]
        return cls(**kw)  # type: ignore[arg-type]


@dataclass
class Prediction:
    """Per-image anomaly scores and pixel maps, both in the units of patch distances."""

    score: torch.Tensor  # (B,)
    anomaly_map: torch.Tensor  # (B, H, W) at the model's input size
    patch_scores: torch.Tensor  # (B, h, w) at feature resolution


class PatchCore(nn.Module):
    """PatchCore with an explicit ``fit`` and a scoring path that keeps autograd available."""

    def __init__(self, config: PatchCoreConfig | None = None) -> None:
        super().__init__()
        self.config = config or PatchCoreConfig()
        self.extractor, self.spec = build_feature_extractor(
            self.config.backbone,
            self.config.layers,
            self.config.weights,
            self.config.pretrained,
            self.config.seed,
        )
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1))
        self.register_buffer("memory_bank", torch.empty(0))
        self.register_buffer("bank_sq", torch.empty(0))
        # N_b(m) for every bank row, found once at fit time so inference skips a bank-wide search.
        self.register_buffer("bank_neighbours", torch.empty(0, dtype=torch.long))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.eval()

    @property
    def backbone_spec(self) -> BackboneSpec:
        return self.spec

    @property
    def is_fitted(self) -> bool:
        return self.memory_bank.numel() > 0

    def train(self, mode: bool = True) -> PatchCore:
        # Nothing in PatchCore learns by gradient; stay in eval so batch-norm never drifts.
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, S, S), to the backbone's input statistics."""
        return (images - self.mean) / self.std

    def embed_features(self, features: dict[str, torch.Tensor], input_hw: tuple[int, int]) -> torch.Tensor:
        """Locally aware patch features (Eq. 2): 3x3 average, resampled to one grid, concatenated.

        With ``feature_stride`` set, finer maps are area-averaged down to that grid: fine,
        low-level detail (pill chips, dirt) enters the features without multiplying the patches.
        """
        maps = [self.pool(features[layer]) for layer in self.config.layers]
        if self.config.feature_stride:
            s = self.config.feature_stride
            size = (-(-input_hw[0] // s), -(-input_hw[1] // s))
        else:
            size = tuple(maps[0].shape[-2:])
        out = []
        for m in maps:
            if tuple(m.shape[-2:]) == size:
                out.append(m)
            elif m.shape[-2] > size[0]:
                out.append(F.adaptive_avg_pool2d(m, size))
            else:
                out.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
        return torch.cat(out, dim=1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] to (B, C, h, w) patch features."""
        feats = self.extractor(self.normalize(images))
        return self.embed_features(feats, (images.shape[-2], images.shape[-1]))

    @torch.no_grad()
    def fit(
        self,
        batches: Iterable[torch.Tensor],
        *,
        total_batches: int | None = None,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Builds the memory bank from batches of good images (values in [0, 1]).

        Features are moved to the CPU as half precision per batch, so the bank of candidates for
        10,000 images stays within a few GB; the coreset search runs on the model's device.
        """
        chunks: list[torch.Tensor] = []
        for i, batch in enumerate(batches):
            if should_stop is not None and should_stop():
                raise InterruptedError("training cancelled")
            emb = self.embed(batch.to(self.mean.device))
            chunks.append(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).half().cpu())
            if progress is not None:
                progress("features", i + 1, total_batches or i + 1)
        if not chunks:
            raise ValueError("no training images")
        device = self.mean.device
        feats = torch.cat(chunks).to(device).float()
        del chunks
        n_keep = max(1, int(round(feats.shape[0] * self.config.coreset_ratio)))
        idx = greedy_coreset(
            feats,
            n_keep,
            projection_dim=self.config.projection_dim,
            seed=self.config.seed,
            progress=(lambda a, b: progress("coreset", a, b)) if progress else None,
            should_stop=should_stop,
        )
        self.set_memory_bank(feats[idx].contiguous())

    @torch.no_grad()
    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Installs a bank and precomputes its norms and each row's bank neighbours."""
        self.memory_bank = bank.float().contiguous()
        self.bank_sq = squared_norms(self.memory_bank)
        k = min(self.config.num_neighbours, bank.shape[0])
        _, nbrs = nearest_neighbours(self.memory_bank, self.memory_bank, self.bank_sq, k=k, chunk=4096)
        self.bank_neighbours = nbrs

    def score_embedding(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and patch scores (B, h, w) from patch features; differentiable."""
        if not self.is_fitted:
            raise RuntimeError("PatchCore has no memory bank: fit it or load a trained model")
        b, c, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(-1, c)
        dist, nn_idx = nearest_neighbours(flat, self.memory_bank, self.bank_sq)
        patch = dist.view(b, h * w)
        nn_idx = nn_idx.view(b, h * w)
        # s* = max patch score, at test patch m_test* with nearest bank row m*.
        top = patch.argmax(dim=1)
        rows = torch.arange(b, device=emb.device)
        s_star = patch[rows, top]
        m_test = flat.view(b, h * w, c)[rows, top]  # (B, C)
        support = self.memory_bank[self.bank_neighbours[nn_idx[rows, top]]]  # (B, k, C)
        d_support = torch.linalg.vector_norm(support - m_test.unsqueeze(1), dim=2)
        # Eq. 7: weight = 1 - exp||m_test* - m*|| / sum_b exp||m_test* - m_b||; m* is the first.
        weight = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
        return weight * s_star, patch.view(b, h, w)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable image scores: the target that Grad-CAM explains."""
        return self.score_embedding(self.embed(images))[0]

    def forward(self, images: torch.Tensor) -> Prediction:
        scores, patch = self.score_embedding(self.embed(images))
        size = (images.shape[-2], images.shape[-1])
        return Prediction(scores, anomaly_map(patch, size, self.config.sigma), patch)

    def predict(self, images: torch.Tensor) -> Prediction:
        """Batched inference without autograd, on the model's device."""
        with torch.inference_mode():
            return self(images.to(self.mean.device))
