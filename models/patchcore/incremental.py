"""Incremental memory-bank updates: add good images or remove images without a full refit.

Adding continues the greedy k-center search of the coreset (``models/components/coreset.py``)
with the existing bank rows as centres already chosen: each new image's patches start at their
distance to the nearest bank row, and the search keeps the new patches that are farthest from
everything chosen so far. It stops when the bank has the size a full refit on all images would
give (``coreset_ratio`` of all patches), so repeated updates do not inflate it. Only the new
images are embedded, and only the neighbour lists that a new row can enter are searched again.

Standardisation. The channel statistics that z-score the features are those of the first fit,
kept fixed: every bank row, neighbour distance and calibrated threshold stays valid. The
statistics of all patches seen (old and new) are still tracked; when they drift from the ones
in use by more than ``restandardize_at`` (in units of a channel's standard deviation), the bank
is re-standardised instead: every row is an affine map of its raw features, so it is mapped to
the new statistics exactly, and the neighbour table is rebuilt.

Removing an image needs no provenance buffer: a bank row is a copy of one training patch, so
re-embedding the image finds its rows as (near-)exact matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from models.components.coreset import _greedy_steps, _one_thread, random_projection
from models.components.nearest import squared_norms
from models.patchcore.model import PatchCore

ProgressFn = Callable[[str, int, int], None]
MATCH_TOL = 1e-3  # squared distance below which a re-embedded patch is the bank row itself (fp16 copies)


@dataclass
class PatchStatistics:
    """Per-channel sums of all raw patch features the bank has seen, in fp64 (mergeable, removable)."""

    n: int
    total: torch.Tensor
    total_sq: torch.Tensor

    @classmethod
    def from_mean_std(cls, n: int, mean: torch.Tensor, std: torch.Tensor) -> PatchStatistics:
        m, s = mean.double(), std.double()
        return cls(n, n * m, (n - 1) * s * s + n * m * m)

    @classmethod
    def of_model(cls, model: PatchCore, n_patches: int) -> PatchStatistics:
        """The statistics a fitted, standardised model was built with (unbiased std, as ``fit``)."""
        return cls.from_mean_std(n_patches, model.channel_mean.cpu(), 1.0 / model.channel_scale.cpu())

    def add(self, raw: torch.Tensor, sign: int = 1) -> None:
        r = raw.double().cpu()
        self.n += sign * r.shape[0]
        self.total = self.total + sign * r.sum(0)
        self.total_sq = self.total_sq + sign * (r * r).sum(0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.n
        var = ((self.total_sq - self.n * mean * mean) / max(self.n - 1, 1)).clamp_min(0)
        return mean.float(), var.sqrt().float().clamp_min(1e-6)

    def to_json(self) -> dict[str, object]:
        mean, std = self.mean_std()
        return {"n": self.n, "mean": mean.tolist(), "std": std.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> PatchStatistics:
        return cls.from_mean_std(int(d["n"]), torch.tensor(d["mean"]), torch.tensor(d["std"]))  # type: ignore[arg-type]


@dataclass
class UpdateReport:
    """What one update did: rows added or removed, bank size, drift and whether it re-standardised."""

    bank_rows_before: int
    bank_rows_after: int
    target_rows: int
    new_patches: int
    rows_added: int = 0
    rows_removed: int = 0
    drift: float = 0.0
    images_matched: int = 0
    restandardized: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def embed_rows(model: PatchCore, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw fp16-rounded patch rows (as ``fit`` keeps them) and their standardised form, for a batch."""
    emb = model.embed(images.to(model.mean.device))
    rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float()
    if not (model.config.standardize and model.channel_mean.numel()):
        raw = rows.half().float()
        return raw, raw
    raw = (rows / model.channel_scale + model.channel_mean).half().float()
    return raw, (raw - model.channel_mean) * model.channel_scale


def knn_sq(
    queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, k: int = 1, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices of the ``k`` nearest bank rows, without autograd.

    Unlike ``nearest_neighbours`` (which keeps a differentiable distance for Grad-CAM), the
    query's own norm is added after the search, not to the whole (rows, bank) block, and blocks
    are small enough to stay in cache: about half the time of the update's searches.
    """
    vals, idxs = [], []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        block = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2.0)
        v, i = block.min(dim=1, keepdim=True) if k == 1 else block.topk(k, dim=1, largest=False)
        vals.append((v + (q * q).sum(1, keepdim=True)).clamp_min(0))
        idxs.append(i)
    return torch.cat(vals), torch.cat(idxs)


def full_refit_rows(model: PatchCore, n_patches: int) -> int:
    """The bank size a single-search full refit on ``n_patches`` patches gives."""
    return max(1, int(round(n_patches * model.config.coreset_ratio)))


def seeded_greedy(
    bank: torch.Tensor, candidates: torch.Tensor, n_select: int, projection_dim: int, seed: int
) -> torch.Tensor:
    """Indices of ``n_select`` candidate rows chosen by greedy k-center, ``bank`` rows being centres.

    The same seeded projection as the full search, applied to both sets, so distances agree.
    """
    n = candidates.shape[0]
    if n_select <= 0:
        return torch.empty(0, dtype=torch.long)
    if n_select >= n:
        return torch.arange(n)
    zb = random_projection(bank, projection_dim, seed)
    z = random_projection(candidates, projection_dim, seed)
    sq = (z * z).sum(1)
    if zb.shape[0]:
        min_d = knn_sq(z, zb, squared_norms(zb))[0][:, 0].contiguous()
    else:
        min_d = torch.full((n,), float("inf"))
    return _greedy_on(z, sq, min_d, n_select).cpu()


def _greedy_on(z: torch.Tensor, sq: torch.Tensor, min_d: torch.Tensor, n_select: int) -> torch.Tensor:
    """Greedy k-center steps (the coreset's own loop) starting from the given squared distances."""
    n = z.shape[0]
    z_aug = torch.empty(z.shape[1] + 1, n, device=z.device)
    z_aug[:-1] = z.T
    z_aug[-1] = 1.0
    chosen = torch.empty(n_select, dtype=torch.long, device=z.device)
    d = torch.empty(n, device=z.device)
    c_aug = torch.empty(z_aug.shape[0], device=z.device)
    with _one_thread(z.device):
        _greedy_steps(z_aug.t(), sq.contiguous(), chosen, min_d, d, c_aug, int(torch.argmax(min_d)), None, 256, None)
    return chosen


def merge_neighbours(bank: torch.Tensor, old_nbrs: torch.Tensor, n_old: int, k: int) -> torch.Tensor:
    """The k-NN table of ``bank`` whose first ``n_old`` rows had ``old_nbrs``: only new rows are searched fully.

    An old row's neighbours are its old ones or new rows, so it merges its k old distances with
    its k nearest new rows; the result equals a full search up to ties.
    """
    sq = squared_norms(bank)
    old, new = bank[:n_old], bank[n_old:]
    k = min(k, bank.shape[0])
    new_nbrs = knn_sq(new, bank, sq, k=k)[1] if new.shape[0] else None
    if n_old == 0:
        return new_nbrs
    d_old = ((old.unsqueeze(1) - bank[old_nbrs]) ** 2).sum(2)
    if new.shape[0]:
        kn = min(k, new.shape[0])
        d_new, i_new = knn_sq(old, new, sq[n_old:], k=kn)
        d_all = torch.cat([d_old, d_new], 1)
        i_all = torch.cat([old_nbrs, i_new + n_old], 1)
    else:
        d_all, i_all = d_old, old_nbrs
    top = d_all.topk(min(k, d_all.shape[1]), dim=1, largest=False).indices
    merged = i_all.gather(1, top)
    if merged.shape[1] < k:  # the bank was smaller than k before: search those rows fully
        merged = knn_sq(old, bank, sq, k=k)[1]
    return torch.cat([merged, new_nbrs], 0) if new_nbrs is not None else merged


def _restandardize_if_drifted(
    model: PatchCore, bank: torch.Tensor, stats: PatchStatistics, limit: float
) -> tuple[torch.Tensor, float, bool]:
    """The bank in the statistics of all patches seen when those drifted beyond ``limit``, else as is.

    Drift: the largest change of a channel's mean or std, in units of the std in use.
    """
    if not (model.config.standardize and model.channel_mean.numel()):
        return bank, 0.0, False
    mean, std = stats.mean_std()
    in_use_mean, in_use_std = model.channel_mean.cpu(), 1.0 / model.channel_scale.cpu()
    drift = float(torch.maximum((mean - in_use_mean).abs() / in_use_std, (std / in_use_std - 1).abs()).max())
    if drift <= limit:
        return bank, drift, False
    bank = (bank * in_use_std + in_use_mean - mean) / std  # exact: each row is an affine map of raw features
    model.channel_mean, model.channel_scale = mean.to(model.mean.device), (1.0 / std).to(model.mean.device)
    return bank, drift, True


def _install(model: PatchCore, bank: torch.Tensor, nbrs: torch.Tensor, source: torch.Tensor | None) -> None:
    """Installs an updated bank; ``source`` (each row's training image, for leave-one-out
    calibration) is kept only while it is known for every row, else dropped."""
    model.memory_bank = bank.float().contiguous()
    model.bank_sq = squared_norms(model.memory_bank)
    model.bank_neighbours = nbrs.long()
    known = source is not None and source.shape[0] == bank.shape[0]
    model.bank_source = (source.long() if known else torch.empty(0, dtype=torch.long)).to(model.memory_bank.device)


def _old_source(model: PatchCore) -> torch.Tensor | None:
    src = model.bank_source.cpu()
    return src if src.numel() == model.memory_bank.shape[0] else None


@torch.no_grad()
def add_images(
    model: PatchCore,
    batches: Iterable[torch.Tensor],
    stats: PatchStatistics,
    *,
    restandardize_at: float = 0.1,
    progress: ProgressFn | None = None,
) -> UpdateReport:
    """Merges good images into ``model``'s bank in place; ``stats`` gains their patches.

    The caller holds a loaded copy of a model version, never the active one's files.
    """
    import time

    t0 = time.process_time()  # CPU time: what the parts cost, even on a shared host
    raws, stds, sources = [], [], []
    old_source = _old_source(model)
    next_image = int(old_source.max()) + 1 if old_source is not None and old_source.numel() else 0
    for i, b in enumerate(batches):
        raw, std = embed_rows(model, b)
        raws.append(raw.cpu())
        stds.append(std.cpu())
        sources.append(torch.arange(next_image, next_image + b.shape[0]).repeat_interleave(raw.shape[0] // b.shape[0]))
        next_image += b.shape[0]
        if progress is not None:
            progress("features", i + 1, i + 1)
    if not raws:
        raise ValueError("no images to add")
    raw_new, std_new = torch.cat(raws), torch.cat(stds)
    t1 = time.process_time()
    bank = model.memory_bank.cpu()
    report = UpdateReport(bank.shape[0], bank.shape[0], 0, raw_new.shape[0])
    stats.add(raw_new)
    bank, report.drift, report.restandardized = _restandardize_if_drifted(model, bank, stats, restandardize_at)
    if report.restandardized:
        std_new = (raw_new - model.channel_mean.cpu()) * model.channel_scale.cpu()
    report.target_rows = full_refit_rows(model, stats.n)
    n_keep = max(0, min(report.target_rows - bank.shape[0], std_new.shape[0]))
    idx = seeded_greedy(bank, std_new, n_keep, model.config.projection_dim, model.config.seed)
    t2 = time.process_time()
    merged = torch.cat([bank, std_new[idx]])
    k = model.config.num_neighbours
    if report.restandardized:
        nbrs = knn_sq(merged, merged, squared_norms(merged), k=min(k, merged.shape[0]))[1]
    else:
        nbrs = merge_neighbours(merged, model.bank_neighbours.cpu(), bank.shape[0], k)
    source = None if old_source is None else torch.cat([old_source, torch.cat(sources)[idx]])
    _install(model, merged.to(model.mean.device), nbrs.to(model.mean.device), source)
    report.rows_added = int(idx.numel())
    report.bank_rows_after = merged.shape[0]
    report.seconds = {
        "embed": t1 - t0,
        "select": t2 - t1,
        "neighbours": time.process_time() - t2,
    }
    return report


@torch.no_grad()
def remove_images(
    model: PatchCore, batches: Iterable[torch.Tensor], stats: PatchStatistics, *, restandardize_at: float = 0.1
) -> UpdateReport:
    """Drops the bank rows that came from these images (found by exact match); ``stats`` loses their patches.

    Rows whose neighbour lists held a dropped row are searched again; the others are renumbered.
    The bank is not refilled: the images' other patches were never in it. An image with no row
    in the bank is taken as never fitted and leaves the statistics alone (``images_matched``).
    """
    bank = model.memory_bank.cpu()
    report = UpdateReport(bank.shape[0], bank.shape[0], 0, 0)
    drop = torch.zeros(bank.shape[0], dtype=torch.bool)
    sq = squared_norms(bank)
    for b in batches:
        raw, std = embed_rows(model, b)
        d2, idx = knn_sq(std.cpu(), bank, sq)
        match = d2[:, 0] < MATCH_TOL * max(1.0, float(std.shape[1]))
        per_image = raw.shape[0] // b.shape[0]
        for i in range(b.shape[0]):
            rows = slice(i * per_image, (i + 1) * per_image)
            if bool(match[rows].any()):  # an image none of whose patches is in the bank was never fitted
                drop[idx[rows, 0][match[rows]]] = True
                stats.add(raw[rows].cpu(), sign=-1)
                report.new_patches += per_image
                report.images_matched += 1
    if bool(drop.all()):
        raise ValueError("removing these images would empty the memory bank")
    keep = (~drop).nonzero()[:, 0]
    new_id = torch.full((bank.shape[0],), -1, dtype=torch.long)
    new_id[keep] = torch.arange(keep.numel())
    kept, report.drift, report.restandardized = _restandardize_if_drifted(model, bank[keep], stats, restandardize_at)
    nbrs = new_id[model.bank_neighbours.cpu()[keep]]
    k = min(model.config.num_neighbours, kept.shape[0])
    stale = (nbrs < 0).any(1) | torch.tensor(report.restandardized)
    if bool(stale.any()) or nbrs.shape[1] != k:
        rows = stale.nonzero()[:, 0] if nbrs.shape[1] == k else torch.arange(kept.shape[0])
        fresh = knn_sq(kept[rows], kept, squared_norms(kept), k=k)[1]
        nbrs = nbrs[:, :k].clone() if nbrs.shape[1] >= k else torch.zeros(kept.shape[0], k, dtype=torch.long)
        nbrs[rows] = fresh
    old_source = _old_source(model)
    source = None if old_source is None else old_source[keep]
    _install(model, kept.to(model.mean.device), nbrs.to(model.mean.device), source)
    report.rows_removed = int(drop.sum())
    report.bank_rows_after = kept.shape[0]
    report.target_rows = full_refit_rows(model, max(stats.n, 1))
    return report
