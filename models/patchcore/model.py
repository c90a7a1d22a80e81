"""The PatchCore module: embed, fit, predict, and a differentiable score for explanations.

Symbols follow the paper: the memory bank M holds locally aware patch features phi_{i,j}; a
test patch's score is its distance to the nearest m* in M; the image score s is the largest
patch score, reweighted by how isolated m* is among its own neighbours N_b(m*) (Eq. 7). With
``score_topk`` = k > 1 it is instead the mean of the k largest patch scores (``aggregate_patches``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.backbones import BackboneSpec, backbone_spec, build_feature_extractor
from models.components.coreset import greedy_coreset
from models.components.nearest import (
    HalfBank,
    approximate_nearest,
    half_bank,
    half_search_available,
    nearest_neighbours,
    squared_norms,
)
from models.patchcore.anomaly_map import anomaly_map
from models.patchcore.fine_map import MAX_ROWS as FINE_MAX_ROWS
from models.patchcore.fine_map import UNIT_SAMPLE, FineMap, blend

ProgressFn = Callable[[str, int, int], None]
FINE_SCORE_MODES = ("max", "sum", "fine")  # models/patchcore/fine_score.py
SCALE_IMAGES = 256  # training images whose leave-one-out scores set the fine score's scales


@dataclass
class PatchCoreConfig:
    """Everything that defines a PatchCore model apart from its memory bank."""

    backbone: str = "efficientnet_lite0"
    # Defaults measured on pillQC and crack (scripts/bench_core.py): small defects on pills are
    # low-level changes that ImageNet features blur, so the grid is fine relative to the part
    # (112 px at stride 8), per-cell colour extremes join two mid-level stages, and every
    # channel is standardised so the few fine channels are not drowned by the many deep ones.
    layers: tuple[str, ...] = ("pixels", "blocks.2", "blocks.3")
    input_size: int = 112  # input height, and width unless ``input_width`` is set
    # Frames far from square keep their aspect (a 250x627 commutator squashed to a square loses
    # its thin cracks): the width is then set on its own (inspector.autoconfig chooses it).
    input_width: int | None = None
    # Each frame at its own aspect with the pixels of input_size x input_width (sides multiples of
    # 8) instead of squashed to them; for products whose frames vary in aspect
    # (scripts/bench_keep_aspect.py): the magnetic tiles range from 1:2.8 to 2.8:1.
    keep_aspect: bool = False
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    num_neighbours: int = 9
    sigma: float = 4.0  # px at the input; with the fine map, 2 (half its 4 px cell) localised better
    feature_stride: int | None = 8  # None: the first layer's resolution
    fine_pool: str = "max"  # how finer maps reach the feature grid: "avg" or "max"
    # A finer grid for the anomaly map (issue 11): a second, small bank of earlier stages queried
    # every ``map_stride`` pixels (models/patchcore/fine_map.py); the image score reads it only
    # with ``fine_score``. "auto" (the default): ``pixels`` and the backbone's stride-4 and
    # stride-8 stages; None: the score's grid alone (model files from before it). Alone it lowered
    # ksdd's real-mask pixel AUROC (0.935 to 0.897); blended with the score grid's map and
    # searched under the frame's highest coarse scores (``map_focus``) it was better on ksdd's
    # real masks and on pasted defects for x1.1-1.2 per frame with Grad-CAM (docs/measured.md, "Sharper maps").
    map_layers: tuple[str, ...] | str | None = "auto"
    map_stride: int = 4
    map_coreset_ratio: float = 0.025  # of 4x as many patches: a bank about the score bank's size
    # How the fine map makes the anomaly map (models/patchcore/fine_map.blend): "mean" of the score
    # grid's map (blurred with ``sigma``) and the fine map (blurred with ``map_sigma``), or "fine"
    # alone (blurred with ``sigma``, as model files from before the blend have it).
    map_blend: str = "mean"
    map_sigma: float = 2.0
    # The share of the fine grid searched, under the frame's highest coarse scores (fine_map.focused);
    # None searches every cell (model files from before it). 0.2 was chosen on pasted defects on
    # crack and pillQC training images (docs/measured.md, "Sharper maps").
    map_focus: float | None = 0.2
    standardize: bool = True  # z-score each channel with training statistics
    # Image score: 1 is the paper's (largest patch score, Eq. 7 reweighting); k > 1 the mean of
    # the k largest patch scores. Crack's own sweep ranked k = 5 first, but k >= 2 lowered ksdd's
    # image AUROC, so the setting does not carry from one product to another and the default stays
    # the paper's score, which no test split chose (docs/measured.md, "Thresholds"). An engineer may set it.
    score_topk: int = 1
    # An image score that also reads the fine bank (issue 11, models/patchcore/fine_score.py):
    # "max" / "sum" of the coarse and fine scores, each over its good-image scale (the
    # ``fine_score_level`` quantile of training images' leave-one-out scores, set at fit time),
    # or "fine" alone. None (the default, and every model.json saved before it): the score bank
    # only. Opt-in: scripts/bench_multiscale.py measured it against the default.
    fine_score: str | None = None
    fine_score_level: float = 0.5
    # Patches per greedy search; more training patches are reduced chunk by chunk (0: never).
    coreset_chunk_rows: int = 65536
    seed: int = 0
    weights: str | None = None
    pretrained: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return (self.input_size, self.input_width or self.input_size)

    def frame_input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The input (height, width) for a frame of ``frame_hw``: ``input_hw`` unless ``keep_aspect``."""
        if not self.keep_aspect:
            return self.input_hw
        h, w = frame_hw
        area = self.input_size * (self.input_width or self.input_size)
        k = (area / max(1, h * w)) ** 0.5
        ih, iw = round(h * k / 8) * 8, round(w * k / 8) * 8
        # A sliver of a frame keeps 32 px across and the area, not its aspect: a 100000x1 strip
        # would otherwise ask for a 35,000 px tall input (the domain check flags it anyway).
        if ih < 32:
            ih, iw = 32, max(32, round(area / 32 / 8) * 8)
        elif iw < 32:
            ih, iw = max(32, round(area / 32 / 8) * 8), 32
        return ih, iw

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        if not d["keep_aspect"]:
            del d["keep_aspect"]  # models that squash keep the model.json they always had
        if d["input_width"] is None:
            del d["input_width"]  # square models keep the model.json they always had
        if d["fine_score"] is None:  # so do models without the fine image score
            del d["fine_score"], d["fine_score_level"]
        if d["map_focus"] is None:  # and models whose fine map, if any, searches every cell
            del d["map_focus"]
        d["layers"] = list(self.layers)
        if isinstance(self.map_layers, tuple):
            d["map_layers"] = list(self.map_layers)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> PatchCoreConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown PatchCore settings: {sorted(unknown)}")
        kw = dict(d)
        kw.setdefault("score_topk", 1)  # saved before the setting: the paper's score
        kw.setdefault("map_layers", None)  # saved before the finer map: keep the map it was calibrated on
        kw.setdefault("map_blend", "fine")  # saved before the blend: a fine map was the map alone
        kw.setdefault("fine_score", None)  # saved before the fine image score: the score bank's alone
        kw.setdefault("map_focus", None)  # saved before the focused fine map: every cell searched
        if "layers" in kw:
            kw["layers"] = tuple(kw["layers"])  # type: ignore[arg-type]
        if isinstance(kw["map_layers"], list):
            kw["map_layers"] = tuple(kw["map_layers"])
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
        if self.config.fine_score is not None and self.config.fine_score not in FINE_SCORE_MODES:
            raise ValueError(f"unknown fine_score '{self.config.fine_score}'; choose one of {FINE_SCORE_MODES}")
        focus = self.config.map_focus
        if focus is not None and not 0 < focus <= 1:
            raise ValueError(f"map_focus must be in (0, 1], got {focus}")
        # The map reads the fine bank only when asked (map_layers); the score may build it alone.
        self.map_reads_fine = bool(resolve_map_layers(self.config))
        map_layers = resolve_fine_layers(self.config)
        if self.config.fine_score and not map_layers:
            raise ValueError("fine_score needs a fine bank: a feature_stride above map_stride")
        if self.config.fine_score and self.config.keep_aspect:
            # Its good-image scales stack the first images' features, which need one grid.
            raise ValueError("fine_score needs one input size for all frames; it cannot keep each frame's aspect")
        # The fine map's stages come from the same forward pass: the extractor returns both sets.
        self.extractor, self.spec = build_feature_extractor(
            self.config.backbone,
            tuple(dict.fromkeys((*self.config.layers, *map_layers))),
            self.config.weights,
            self.config.pretrained,
            self.config.seed,
        )
        self.fine_map = (
            FineMap(map_layers, self.config.map_stride, self.config.map_coreset_ratio, self.config.seed)
            if map_layers
            else None
        )
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1))
        self.register_buffer("channel_mean", torch.empty(0))
        self.register_buffer("channel_scale", torch.empty(0))
        self.register_buffer("memory_bank", torch.empty(0))
        self.register_buffer("bank_sq", torch.empty(0))
        # N_b(m) for every bank row, found once at fit time so inference skips a bank-wide search.
        self.register_buffer("bank_neighbours", torch.empty(0, dtype=torch.long))
        # Which training image (0-based, in fit order) each bank row came from: leave-one-out
        # calibration excludes an image's own rows (models/patchcore/leave_one_out.py).
        self.register_buffer("bank_source", torch.empty(0, dtype=torch.long))
        # (coarse, fine) good-image scales of the two image scores, with ``fine_score`` only.
        self.register_buffer("score_scale", torch.empty(0))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        # Batch-norm folded and "same" padding fixed: 13.2 -> 9.8 ms at 224 px on 2 CPU cores
        # (``inspector bench`` times both), same maps to float round-off (tests/models/test_fusion.py).
        self.extractor.optimize_for_inference(self.config.input_hw)
        # NHWC convolutions are about 12% faster for this backbone on the CPU; same values.
        self.extractor.to(memory_format=torch.channels_last)
        # Raw fp16 patch features of the last fit and their grid, when it was one chunk (small
        # sets): leave_one_out_scores uses and drops them. Never saved.
        self.fit_rows: tuple[torch.Tensor, tuple[int, int]] | None = None
        # With ``fine_score``: the fine bank's leave-one-out scores of every training image, when
        # the fit kept ``fit_rows`` too; calibration combines them with the coarse ones. Never saved.
        self.fit_fine_loo: torch.Tensor | None = None
        # The bf16 search form of the bank, rebuilt lazily whenever the bank tensor changes.
        self._half_bank: tuple[int, int, HalfBank] | None = None
        self.eval()

    @property
    def backbone_spec(self) -> BackboneSpec:
        return self.spec

    @property
    def is_fitted(self) -> bool:
        return self.memory_bank.numel() > 0

    def with_random_backbone(self, seed: int) -> PatchCore:
        """A copy whose backbone has fresh random weights and the same memory bank.

        For the randomisation check of explanations (Adebayo et al., 2018): an explanation that
        survives re-initialised weights explains nothing about the model.
        """
        twin = copy.deepcopy(self)
        cfg = self.config
        fresh, _ = build_feature_extractor(cfg.backbone, tuple(self.extractor.layers), pretrained=False, seed=seed)
        fresh.optimize_for_inference(cfg.input_hw)
        twin.extractor = fresh.to(self.mean.device, memory_format=torch.channels_last)
        return twin

    def train(self, mode: bool = True) -> PatchCore:
        # Nothing in PatchCore learns by gradient; stay in eval so batch-norm never drifts.
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W), to the backbone's input statistics."""
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
                out.append(_pool_to(m, size, self.config.fine_pool))
            else:
                out.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
        emb = torch.cat(out, dim=1)
        if self.config.standardize and self.channel_mean.numel():
            emb = (emb - self.channel_mean.view(1, -1, 1, 1)) * self.channel_scale.view(1, -1, 1, 1)
        return emb

    def map_patch_scores(
        self, features: dict[str, torch.Tensor], patch: torch.Tensor, input_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Patch scores on the map's grid (B, h', w'): the fine map's where it is fitted, else ``patch``."""
        if self.fine_map is None or not self.fine_map.is_fitted or not self.map_reads_fine:
            return patch
        return self.fine_map.patch_scores(features, input_hw, patch, self.config.map_focus).to(patch.dtype)

    def pixel_map(
        self, features: dict[str, torch.Tensor], patch: torch.Tensor, input_hw: tuple[int, int]
    ) -> torch.Tensor:
        """The anomaly map (B, H, W) at the input size, from the map's grid (``map_patch_scores``)."""
        return self.map_from_grids(patch, self.map_patch_scores(features, patch, input_hw), input_hw)

    def map_from_grids(self, patch: torch.Tensor, map_patch: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
        """The anomaly map from the score's grid ``patch`` and the map's grid ``map_patch`` (the
        same tensor without a fitted fine map): upsampled, smoothed and blended (``map_blend``)."""
        cfg = self.config
        if self.fine_map is None or not self.fine_map.is_fitted or not self.map_reads_fine or cfg.map_blend == "fine":
            return anomaly_map(map_patch, input_hw, cfg.sigma)
        fine = anomaly_map(map_patch, input_hw, cfg.map_sigma)
        return blend(anomaly_map(patch, input_hw, cfg.sigma), fine, cfg.map_blend)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] to (B, C, h, w) patch features."""
        feats = self.extractor(self.normalize(images).contiguous(memory_format=torch.channels_last))
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

        Features are moved to the CPU as half precision per batch. Below twice
        ``coreset_chunk_rows`` patches the coreset is one greedy search over all of them, as in
        the paper. Beyond that, each chunk of that many patches is reduced to its own coreset as
        it arrives and then dropped, so memory and time grow linearly with the number of images
        (10,000 images: ``scripts/bench_scale.py``) instead of holding every patch and paying a
        search whose cost grows with the square of their number.
        """
        dev = self.mean.device
        fine = self.fine_map
        map_rows, score_rows = _RowSample(FINE_MAX_ROWS, self.config.seed), _RowSample(UNIT_SAMPLE, self.config.seed)
        # With ``fine_score``: raw coarse features of the first images (they set the scales) and
        # raw fine features of all images while the fit is one coreset search (as ``fit_rows``).
        kept_coarse: list[torch.Tensor] = []
        kept_fine: list[torch.Tensor] = []
        n_seen, coarse_rows, keep_all = 0, 0, True
        chunk = self.config.coreset_chunk_rows

        def embedded() -> Iterable[torch.Tensor]:
            nonlocal n_seen, coarse_rows, keep_all, kept_fine
            for b in batches:
                x = self.normalize(b.to(dev)).contiguous(memory_format=torch.channels_last)
                feats = self.extractor(x)
                hw = (b.shape[-2], b.shape[-1])
                emb = self.embed_features(feats, hw)  # unstandardised: fit_embedded has reset the statistics
                if fine is not None:
                    raw = fine.raw_embed(feats, hw)
                    ids = torch.arange(n_seen, n_seen + b.shape[0]).repeat_interleave(raw.shape[2] * raw.shape[3])
                    map_rows.add(fine.rows(raw).half().cpu(), ids)
                    score_rows.add(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).half().cpu())
                    if self.config.fine_score:
                        coarse_rows += emb.shape[0] * emb.shape[2] * emb.shape[3]
                        if n_seen < SCALE_IMAGES:
                            kept_coarse.append(emb.half().cpu())
                        if keep_all and chunk and coarse_rows >= 2 * chunk:  # a chunked fit: keep a sample
                            keep_all, kept_fine = False, [torch.cat(kept_fine)[:SCALE_IMAGES]] if kept_fine else []
                        if keep_all or n_seen < SCALE_IMAGES:
                            kept_fine.append(raw.half().cpu())
                n_seen += b.shape[0]
                yield emb

        self.fit_embedded(embedded(), total_batches=total_batches, progress=progress, should_stop=should_stop)
        if fine is not None:
            if progress is not None:
                progress("fine map", 0, 1)
            sample = score_rows.result().float().to(dev)
            if self.config.standardize:
                sample = (sample - self.channel_mean) * self.channel_scale
            coverage, _ = nearest_neighbours(sample, self.memory_bank, self.bank_sq)
            rows, sources = map_rows.result_with_sources()
            fine.fit(rows.to(dev), coverage, sources)
            if self.config.fine_score:
                self.score_scale = self._good_scales(kept_coarse, kept_fine, keep_all)
            if progress is not None:
                progress("fine map", 1, 1)

    @torch.no_grad()
    def _good_scales(self, coarse_raw: list[torch.Tensor], fine_raw: list[torch.Tensor], all_kept: bool) -> Tensor:
        """(coarse, fine) scales: the ``fine_score_level`` quantile of the first training images'
        leave-one-out scores under each bank (training images only, never a test image). Where
        every image's fine features were kept, their fine leave-one-out scores are kept for
        calibration (``fit_fine_loo``), so it needs no second pass over the images."""
        from models.patchcore.fine_score import fine_scores_excluding, good_scale
        from models.patchcore.leave_one_out import score_excluding

        assert self.fine_map is not None
        dev = self.mean.device
        coarse_all, fine_all = torch.cat(coarse_raw)[:SCALE_IMAGES], torch.cat(fine_raw)
        coarse, fine = [], []
        for start in range(0, coarse_all.shape[0], 16):
            e = coarse_all[start : start + 16].float().to(dev)
            if self.config.standardize and self.channel_mean.numel():
                e = (e - self.channel_mean.view(1, -1, 1, 1)) * self.channel_scale.view(1, -1, 1, 1)
            coarse.append(score_excluding(self, e, torch.arange(start, start + e.shape[0], device=dev))[0].cpu())
        for start in range(0, fine_all.shape[0], 16):
            e = fine_all[start : start + 16]
            ids = torch.arange(start, start + e.shape[0], device=dev)
            fine.append(fine_scores_excluding(self.fine_map, e, ids).cpu())
        fine_loo = torch.cat(fine)
        self.fit_fine_loo = fine_loo if all_kept and self.fit_rows is not None else None
        level = self.config.fine_score_level
        scales = [good_scale(torch.cat(coarse), level), good_scale(fine_loo[:SCALE_IMAGES], level)]
        return torch.stack(scales).to(dev)

    @torch.no_grad()
    def fit_embedded(
        self,
        embeddings: Iterable[torch.Tensor],
        *,
        total_batches: int | None = None,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """``fit`` from patch features (B, C, h, w) already embedded without standardisation.

        The settings search (inspector.autoconfig) embeds its images once per backbone and size
        and fits several stage sets and coreset ratios from those features.
        """
        self.channel_mean, self.channel_scale = self.channel_mean.new_empty(0), self.channel_scale.new_empty(0)
        chunk_rows = self.config.coreset_chunk_rows
        pending: list[torch.Tensor] = []
        pending_src: list[torch.Tensor] = []  # the source image of each pending row
        n_pending = 0
        n_images = 0
        kept: list[torch.Tensor] = []  # raw (unstandardised) fp16 rows chosen from finished chunks
        kept_src: list[torch.Tensor] = []
        stats = _RunningStats()
        self.fit_rows = None
        grids: set[tuple[int, int]] = set()  # frames kept at their own aspect give several
        selection_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        for i, emb in enumerate(embeddings):
            if should_stop is not None and should_stop():
                raise InterruptedError("training cancelled")
            rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).half().cpu()
            pending.append(rows)
            per_image = emb.shape[2] * emb.shape[3]
            grids.add((emb.shape[2], emb.shape[3]))
            grid = (emb.shape[2], emb.shape[3])
            pending_src.append(torch.arange(n_images, n_images + emb.shape[0]).repeat_interleave(per_image))
            n_images += emb.shape[0]
            n_pending += rows.shape[0]
            stats.add(rows)
            if progress is not None:
                progress("features", i + 1, total_batches or i + 1)
            if chunk_rows and n_pending >= 2 * chunk_rows:
                # Reduce one chunk once two are waiting: the last search then covers between one
                # and two chunks, never a small remainder whose coreset would be a thin sample.
                rest, rest_src = torch.cat(pending), torch.cat(pending_src)
                chunk, rest = rest[:chunk_rows], rest[chunk_rows:].clone()
                chunk_src, rest_src = rest_src[:chunk_rows], rest_src[chunk_rows:].clone()
                pending, pending_src, n_pending = [rest], [rest_src], rest.shape[0]
                if selection_stats is None:
                    # The statistics of the patches seen by now standardise every chunk's search,
                    # so all chunks measure distance alike; the bank gets those of all patches.
                    selection_stats = stats.result()
                idx = self._select(chunk, selection_stats, progress, should_stop)
                kept.append(chunk[idx])
                kept_src.append(chunk_src[idx])
                del chunk
        if not kept and not pending:
            raise ValueError("no training images")
        if not kept:
            # One chunk: the paper's single search, with statistics of all the patches.
            feats = torch.cat(pending)
            del pending
            # Held for leave-one-out scoring, which then needs no second pass over the images.
            if len(grids) == 1:  # leave-one-out reads the kept rows as images of one grid
                self.fit_rows = (feats, grid)
            idx = self._select(feats, stats.result(), progress, should_stop)
            kept.append(feats[idx])
            kept_src.append(torch.cat(pending_src)[idx])
        elif pending:
            assert selection_stats is not None
            chunk = torch.cat(pending)
            del pending
            idx = self._select(chunk, selection_stats, progress, should_stop)
            kept.append(chunk[idx])
            kept_src.append(torch.cat(pending_src)[idx])
        bank = torch.cat(kept).float()
        if self.config.standardize:
            mean, std = stats.result()  # on the CPU, like the rows they summarise
            bank = (bank - mean) / std
            self.channel_mean, self.channel_scale = mean.to(self.mean.device), (1.0 / std).to(self.mean.device)
        self.set_memory_bank(bank.to(self.mean.device), torch.cat(kept_src))

    def _select(
        self,
        raw: torch.Tensor,
        stats: tuple[torch.Tensor, torch.Tensor],
        progress: ProgressFn | None,
        should_stop: Callable[[], bool] | None,
    ) -> torch.Tensor:
        """Indices of the greedy coreset of one chunk of raw fp16 patch features."""
        device = self.mean.device
        feats = raw.to(device)
        if self.config.standardize:
            # Equal say for every channel: fine stages have fewer, smaller channels than deep ones.
            mean, std = (t.to(device) for t in stats)
            feats = feats.clone() if feats is raw else feats
            for start in range(0, feats.shape[0], 65536):
                block = feats[start : start + 65536]
                block.copy_((block.float() - mean) / std)
        n_keep = max(1, int(round(feats.shape[0] * self.config.coreset_ratio)))
        idx = greedy_coreset(
            feats,
            n_keep,
            projection_dim=self.config.projection_dim,
            seed=self.config.seed,
            progress=(lambda a, b: progress("coreset", a, b)) if progress else None,
            should_stop=should_stop,
        )
        return idx.cpu()

    @torch.no_grad()
    def set_memory_bank(self, bank: torch.Tensor, source: torch.Tensor | None = None) -> None:
        """Installs a bank (and each row's source image, if known); precomputes norms and neighbours."""
        if source is not None and source.shape != bank.shape[:1]:
            raise ValueError(f"bank_source has {tuple(source.shape)} entries for {bank.shape[0]} bank rows")
        self.memory_bank = bank.float().contiguous()
        self.bank_source = (torch.empty(0, dtype=torch.long) if source is None else source.long()).to(
            self.memory_bank.device
        )
        self.bank_sq = squared_norms(self.memory_bank)
        k = min(self.config.num_neighbours, bank.shape[0])
        _, nbrs = nearest_neighbours(self.memory_bank, self.memory_bank, self.bank_sq, k=k, chunk=4096)
        self.bank_neighbours = nbrs

    def score_embedding(self, emb: torch.Tensor, *, exact: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and patch scores (B, h, w) from patch features; differentiable.

        ``exact=None`` picks the certified bf16 search (``_certified_patches``) where it is
        faster and no gradient is needed, else one exact fp32 product. Image scores agree to
        float round-off; patch scores off the image score's patch may differ within the
        search's certified bound (under 4% of the distance on pillQC, a fraction of that typically).
        """
        if not self.is_fitted:
            raise RuntimeError("PatchCore has no memory bank: fit it or load a trained model")
        b, c, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(-1, c)
        if exact is None:
            needs_grad = torch.is_grad_enabled() and emb.requires_grad
            exact = needs_grad or not half_search_available(emb.device, self.memory_bank.shape[0])
        rows = torch.arange(b, device=emb.device)
        k = max(1, min(int(self.config.score_topk), h * w))
        if exact:
            dist, nn_idx = nearest_neighbours(flat, self.memory_bank, self.bank_sq)
            patch = dist.view(b, h * w)
            if k > 1:
                return aggregate_patches(patch, k), patch.view(b, h, w)
            # s* = max patch score, at test patch m_test* with nearest bank row m*.
            top = patch.argmax(dim=1)
            s_star = patch[rows, top]
            m_star = nn_idx.view(b, h * w)[rows, top]
        else:
            patch, top, s_star, m_star, exact_top = self._certified_patches(flat, b, k)
            if k > 1:
                return exact_top.mean(dim=1), patch.view(b, h, w)
        m_test = flat.view(b, h * w, c)[rows, top]  # (B, C)
        support = self.memory_bank[self.bank_neighbours[m_star]]  # (B, k, C)
        d_support = torch.linalg.vector_norm(support - m_test.unsqueeze(1), dim=2)
        # Eq. 7: weight = 1 - exp||m_test* - m*|| / sum_b exp||m_test* - m_b||; m* is the first.
        weight = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
        return weight * s_star, patch.view(b, h, w)

    def _certified_patches(
        self, flat: torch.Tensor, b: int, k: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch scores (B, hw), the exact s*, its patch and its m*, and the exact k largest
        patch scores (B, k), from a bf16 search.

        Every patch gets an interval that surely holds its exact squared distance. The k-th
        largest score is at least the k-th largest lower bound, so only patches whose upper
        bound reaches that can be among the k largest; those few (often one to a dozen of 784)
        are searched again exactly in fp32. The image score is thus the exact one; other
        patches keep the bf16 value, which is off by well under a percent and only draws the map.
        """
        hb = self._search_bank()
        d2, err = approximate_nearest(flat, hb)
        d2, err = d2.view(b, -1), err.view(b, -1)
        floor = (d2 - err).topk(k, dim=1).values[:, -1:]
        cand = (d2 + err >= floor).nonzero()  # (k, 2): image, patch
        hw = d2.shape[1]
        dist, idx = nearest_neighbours(flat[cand[:, 0] * hw + cand[:, 1]], self.memory_bank, self.bank_sq)
        patch = d2.clamp_min(1e-12).sqrt()
        patch[cand[:, 0], cand[:, 1]] = dist[:, 0]
        exact = torch.full_like(patch, -1.0)
        exact[cand[:, 0], cand[:, 1]] = dist[:, 0]
        nn_of = torch.zeros_like(patch, dtype=torch.long)
        nn_of[cand[:, 0], cand[:, 1]] = idx[:, 0]
        top = exact.argmax(dim=1)
        rows = torch.arange(b, device=flat.device)
        return patch, top, exact[rows, top], nn_of[rows, top], exact.topk(k, dim=1).values

    def _search_bank(self) -> HalfBank:
        key = (id(self.memory_bank), self.memory_bank._version)
        if self._half_bank is None or self._half_bank[:2] != key:
            self._half_bank = (*key, half_bank(self.memory_bank))
        return self._half_bank[2]

    def score_features(
        self, features: dict[str, torch.Tensor], input_hw: tuple[int, int], *, exact: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and the score bank's patch scores (B, h, w) from backbone features;
        differentiable. With ``fine_score`` the fine bank's image score joins (``fine_score.combine``)."""
        scores, patch = self.score_embedding(self.embed_features(features, input_hw), exact=exact)
        if self.config.fine_score and self.fine_map is not None and self.score_scale.numel() == 2:
            from models.patchcore.fine_score import combine, fine_image_scores

            fine = fine_image_scores(self.fine_map, features, input_hw)
            scores = combine(self.config.fine_score, scores, fine, self.score_scale)
        return scores, patch

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable image scores: the target that Grad-CAM explains."""
        feats = self.extractor(self.normalize(images).contiguous(memory_format=torch.channels_last))
        return self.score_features(feats, (images.shape[-2], images.shape[-1]))[0]

    def forward(self, images: torch.Tensor, exact: bool | None = None) -> Prediction:
        size = (images.shape[-2], images.shape[-1])
        feats = self.extractor(self.normalize(images).contiguous(memory_format=torch.channels_last))
        scores, patch = self.score_features(feats, size, exact=exact)
        return Prediction(scores, self.pixel_map(feats, patch, size), patch)

    def predict(self, images: torch.Tensor) -> Prediction:
        """Batched inference without autograd, on the model's device."""
        with torch.inference_mode():
            return self(images.to(self.mean.device))


def aggregate_patches(patch: torch.Tensor, k: int) -> torch.Tensor:
    """Image scores (B,) as the mean of the ``k`` largest of each row of patch scores (B, P)."""
    return patch.topk(max(1, min(k, patch.shape[1])), dim=1).values.mean(dim=1)


class _RunningStats:
    """Per-channel mean and (unbiased) std accumulated batch by batch, in fp64."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None

    def add(self, rows: torch.Tensor, chunk: int = 65536) -> None:
        for start in range(0, rows.shape[0], chunk):
            block = rows[start : start + chunk].double()
            s, sq = block.sum(0), (block * block).sum(0)
            self.total = s if self.total is None else self.total + s
            self.total_sq = sq if self.total_sq is None else self.total_sq + sq
            self.n += block.shape[0]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.total is not None and self.total_sq is not None
        mean = self.total / self.n
        var = ((self.total_sq - self.n * mean * mean) / max(self.n - 1, 1)).clamp_min(0)
        return mean.float(), var.sqrt().float().clamp_min(1e-6)


def _pool_to(m: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Area pooling of a finer map onto the feature grid (``mode`` "avg" or "max").

    Where the grid divides the map exactly (the usual case) a plain pool gives the same values
    as the adaptive one and, unlike it, exports to ONNX.
    """
    h, w = int(m.shape[-2]), int(m.shape[-1])
    if h % size[0] == 0 and w % size[1] == 0:
        k = (h // size[0], w // size[1])
        return F.max_pool2d(m, k) if mode == "max" else F.avg_pool2d(m, k)
    return F.adaptive_max_pool2d(m, size) if mode == "max" else F.adaptive_avg_pool2d(m, size)


def resolve_fine_layers(config: PatchCoreConfig) -> tuple[str, ...]:
    """The fine bank's stages: the map's (``resolve_map_layers``), or "auto" when only the image
    score (``fine_score``) reads the fine bank."""
    if config.fine_score and not config.map_layers:
        return resolve_map_layers(replace(config, map_layers="auto"))
    return resolve_map_layers(config)


def resolve_map_layers(config: PatchCoreConfig) -> tuple[str, ...]:
    """The fine map's stages: "auto" is ``pixels`` plus the first stages at ``map_stride`` and
    twice it; none where the score's grid is already that fine or the setting is None."""
    if not config.map_layers or not config.feature_stride or config.map_stride >= config.feature_stride:
        return ()
    if config.map_layers != "auto":
        return tuple(config.map_layers)
    strides = backbone_spec(config.backbone).strides
    wanted = (config.map_stride, 2 * config.map_stride)
    picked = [next((n for n, s in strides.items() if s == k and n != "pixels"), None) for k in wanted]
    if None in picked:
        return ()
    return ("pixels", *picked)  # type: ignore[return-value]


class _RowSample:
    """A uniform random sample of at most ``cap`` rows from batches of any number: when twice the
    cap is held, half is dropped at random and later batches are kept at half the rate. Each
    row's source image id is carried along (``result_sources``)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap, self.rate, self.parts, self.srcs, self.n = cap, 1.0, [], [], 0
        self.gen = torch.Generator().manual_seed(seed)
        self._result: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, rows: torch.Tensor, src: torch.Tensor | None = None) -> None:
        src = torch.full((rows.shape[0],), -1, dtype=torch.long) if src is None else src.long().cpu()
        if self.rate < 1.0:
            keep = torch.rand(rows.shape[0], generator=self.gen) < self.rate
            rows, src = rows[keep], src[keep]
        self.parts.append(rows)
        self.srcs.append(src)
        self.n += rows.shape[0]
        if self.n >= 2 * self.cap:
            held, held_src = torch.cat(self.parts), torch.cat(self.srcs)
            keep = torch.rand(held.shape[0], generator=self.gen) < 0.5
            self.parts, self.srcs, self.n, self.rate = [held[keep]], [held_src[keep]], int(keep.sum()), self.rate / 2

    def result(self) -> torch.Tensor:
        return self.result_with_sources()[0]

    def result_with_sources(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._result is None:
            held, src = torch.cat(self.parts), torch.cat(self.srcs)
            if held.shape[0] > self.cap:
                pick = torch.randperm(held.shape[0], generator=self.gen)[: self.cap]
                held, src = held[pick], src[pick]
            self._result = (held, src)
        return self._result
