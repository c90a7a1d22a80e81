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

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from models.components.coreset import _greedy_steps, _one_thread, random_projection
from models.components.nearest import _BOUND as BF16_ERROR
from models.components.nearest import (
    HALF_SEARCH_MIN_ROWS,
    HalfBank,
    half_bank,
    half_search_available,
    squared_norms,
)
from models.patchcore.anomaly_map import to_size
from models.patchcore.loo_state import TOP_PATCHES, raw_rows, top_patches
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
    new_images: NewImagePatches | None = field(default=None, repr=False)
    removed_ids: list[int] = field(default_factory=list)


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
    keep_patches: int = TOP_PATCHES,
) -> UpdateReport:
    """Merges good images into ``model``'s bank in place; ``stats`` gains their patches.

    The caller holds a loaded copy of a model version, never the active one's files. The new
    images' leave-one-out patch distances come from the same search that starts the greedy
    selection (``report.new_images``: their top patches and maps, for recalibration).
    """
    t0 = time.process_time()  # CPU time: what the parts cost, even on a shared host
    raws, sources = [], []
    old_source = _old_source(model)
    next_image = int(old_source.max()) + 1 if old_source is not None and old_source.numel() else 0
    first_id = next_image
    runs: list[tuple[int, tuple[int, int]]] = []  # (images, patch grid) of each batch
    for i, b in enumerate(batches):
        emb = model.embed(b.to(model.mean.device))
        grid = (emb.shape[2], emb.shape[3])  # frames kept at their own aspect: one per batch size
        runs.append((b.shape[0], grid))
        raws.append(raw_rows(model, emb).cpu())
        sources.append(torch.arange(next_image, next_image + b.shape[0]).repeat_interleave(grid[0] * grid[1]))
        next_image += b.shape[0]
        if progress is not None:
            progress("features", i + 1, i + 1)
    if not raws:
        raise ValueError("no images to add")
    raw_new, src_new = torch.cat(raws), torch.cat(sources)
    t1 = time.process_time()
    bank = model.memory_bank.cpu()
    report = UpdateReport(bank.shape[0], bank.shape[0], 0, raw_new.shape[0])
    stats.add(raw_new)
    bank, report.drift, report.restandardized = _restandardize_if_drifted(model, bank, stats, restandardize_at)
    std_new = _standardised(model, raw_new)
    report.target_rows = full_refit_rows(model, stats.n)
    n_keep = max(0, min(report.target_rows - bank.shape[0], std_new.shape[0]))
    # One search of the new patches against the old bank starts the greedy selection (where the
    # selection space is the feature space) and bounds their leave-one-out distances.
    d_lo, d_hi = old_bank_distances(std_new, bank)
    projected = 0 < model.config.projection_dim < std_new.shape[1]
    if projected:
        idx = seeded_greedy(bank, std_new, n_keep, model.config.projection_dim, model.config.seed)
    else:
        idx = _select_from(std_new, d_hi.clone(), n_keep)
    t2 = time.process_time()
    merged = torch.cat([bank, std_new[idx]])
    k = model.config.num_neighbours
    if report.restandardized:
        nbrs = knn_sq(merged, merged, squared_norms(merged), k=min(k, merged.shape[0]))[1]
    else:
        nbrs = merge_neighbours(merged, model.bank_neighbours.cpu(), bank.shape[0], k)
    source = None if old_source is None else torch.cat([old_source, src_new[idx]])
    _install(model, merged.to(model.mean.device), nbrs.to(model.mean.device), source)
    t3 = time.process_time()
    if keep_patches > 0:
        report.new_images = _new_image_patches(
            bank, raw_new, std_new, (d_lo, d_hi), idx, src_new, first_id, runs, keep_patches
        )
    report.rows_added = int(idx.numel())
    report.bank_rows_after = merged.shape[0]
    report.seconds = {
        "embed": t1 - t0,
        "select": t2 - t1,
        "neighbours": t3 - t2,
        "calibration_patches": time.process_time() - t3,
    }
    return report


def _standardised(model: PatchCore, raw: torch.Tensor) -> torch.Tensor:
    if not (model.config.standardize and model.channel_mean.numel()):
        return raw
    return (raw - model.channel_mean.cpu()) * model.channel_scale.cpu()


def _select_from(std_new: torch.Tensor, min_d: torch.Tensor, n_select: int) -> torch.Tensor:
    """Greedy continuation in the feature space itself, from distances to the bank already known."""
    if n_select <= 0:
        return torch.empty(0, dtype=torch.long)
    if n_select >= std_new.shape[0]:
        return torch.arange(std_new.shape[0])
    return _greedy_on(std_new, (std_new * std_new).sum(1), min_d, n_select).cpu()


@dataclass
class NewImagePatches:
    """The added images' leave-one-out top patches (raw fp16) and bounds, and their patch maps."""

    ids: torch.Tensor
    rows: torch.Tensor
    bound: torch.Tensor
    patch_scores: torch.Tensor  # (B, h, w) leave-one-out patch distances against the new bank

    @classmethod
    def concat(cls, parts: list[NewImagePatches]) -> NewImagePatches:
        """Runs of images of different patch grids (frames kept at their own aspect) in one: their
        patch maps, which only set the map's colour range, resized to the first run's grid."""
        if len(parts) == 1:
            return parts[0]
        grid = (int(parts[0].patch_scores.shape[-2]), int(parts[0].patch_scores.shape[-1]))
        maps = [to_size(p.patch_scores, grid) for p in parts]
        return cls(
            torch.cat([p.ids for p in parts]),
            torch.cat([p.rows for p in parts]),
            torch.cat([p.bound for p in parts]),
            torch.cat(maps),
        )


def old_bank_distances(queries: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds (n,) on each query's squared distance to its nearest bank row.

    Where the CPU has native bf16 and the search is large, one bf16 product with its proven
    error bound (``models.components.nearest.approximate_nearest``, about 2.5x faster here);
    else the exact fp32 search, both bounds equal.
    """
    if queries.shape[0] * bank.shape[0] >= _HALF_MIN_PAIRS and half_search_available(
        queries.device, HALF_SEARCH_MIN_ROWS
    ):
        lower, nearest = _approximate_nearest(queries, half_bank(bank))
        # The exact distance to the row the bf16 search found: an upper bound, nearly always exact.
        upper = ((queries - bank[nearest]) ** 2).sum(1)
        return lower.minimum(upper), upper
    d = knn_sq(queries, bank, squared_norms(bank))[0][:, 0].contiguous()
    return d, d


def _approximate_nearest(queries: torch.Tensor, bank: HalfBank, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A proven lower bound on each query's squared nearest distance and the row the bf16 product
    found nearest: ``approximate_nearest``'s product and error bound, keeping the indices too."""
    q = queries.float() - bank.centre
    q_sq = (q * q).sum(1)
    aug = torch.cat([q * -2.0, torch.ones_like(q[:, :1])], dim=1).to(torch.bfloat16)
    best = torch.empty(q.shape[0])
    idx = torch.empty(q.shape[0], dtype=torch.long)
    for start in range(0, q.shape[0], chunk):
        v, i = torch.mm(aug[start : start + chunk], bank.rows.T).min(dim=1)
        best[start : start + chunk], idx[start : start + chunk] = v.float(), i
    r = bank.max_norm
    err = BF16_ERROR * (2.0 * q_sq.sqrt() * r + r * r) + 1e-6 * q_sq
    return (q_sq + best - err).clamp_min(0), idx


_HALF_MIN_PAIRS = 1 << 24  # query x bank pairs below which the exact search is cheap anyway


def _search_exact(
    std_new: torch.Tensor,
    bank: torch.Tensor,
    which: torch.Tensor,
    exact: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
) -> None:
    """Fills ``exact`` where ``which``: the exact old-bank distance, capped by the new-row one in ``hi``."""
    flat = which.flatten().nonzero()[:, 0]
    if flat.numel():
        d = knn_sq(std_new[flat], bank, squared_norms(bank))[0][:, 0]
        exact.view(-1)[flat] = torch.minimum(d, hi.view(-1)[flat])
        lo.view(-1)[flat] = exact.view(-1)[flat]


def _new_image_patches(
    bank: torch.Tensor,
    raw_new: torch.Tensor,
    std_new: torch.Tensor,
    old_bounds: tuple[torch.Tensor, torch.Tensor],
    idx: torch.Tensor,
    src_new: torch.Tensor,
    first_id: int,
    runs: list[tuple[int, tuple[int, int]]],
    m: int,
) -> NewImagePatches:
    """Each new patch's distance to the new bank without its own image's rows (the old bank, or
    a new row of another new image), and the top ``m`` patches per image with the exact bound.

    Only patches whose upper bound reaches the (m+1)-th largest lower bound of their image can
    be among its m + 1 farthest; those are searched exactly, so the kept rows and the bound are
    exact whether the first search was bf16 or not. ``runs``: (images, patch grid) of each
    batch, in order (frames kept at their own aspect bring several grids).
    """
    lo, hi = old_bounds[0].clone(), old_bounds[1].clone()
    if idx.numel():
        chosen, chosen_src = std_new[idx], src_new[idx]
        chosen_sq = squared_norms(chosen)
        for start in range(0, std_new.shape[0], 1024):
            q = std_new[start : start + 1024]
            block = torch.addmm(chosen_sq.unsqueeze(0), q, chosen.T, alpha=-2.0)
            block.masked_fill_(src_new[start : start + 1024, None] == chosen_src[None, :], float("inf"))
            dn = block.amin(1) + (q * q).sum(1)
            lo[start : start + 1024] = torch.minimum(lo[start : start + 1024], dn)
            hi[start : start + 1024] = torch.minimum(hi[start : start + 1024], dn)
    parts, row, image = [], 0, first_id
    for n_img, grid in runs:
        end = row + n_img * grid[0] * grid[1]
        part = slice(row, end)
        parts.append(_run_top_patches(bank, raw_new[part], std_new[part], lo[part], hi[part], image, n_img, grid, m))
        row, image = end, image + n_img
    return NewImagePatches.concat(parts)


def _run_top_patches(
    bank: torch.Tensor,
    raw_new: torch.Tensor,
    std_new: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    first_id: int,
    n_img: int,
    grid: tuple[int, int],
    m: int,
) -> NewImagePatches:
    """``_new_image_patches`` for a run of images of one patch grid, from their bounds."""
    per = grid[0] * grid[1]
    lo, hi = lo.reshape(n_img, per).clone(), hi.reshape(n_img, per).clone()
    d = (lo + hi) / 2
    patch_view = hi
    if not torch.equal(lo, hi):
        # Round 1: the m + 1 patches of largest upper bound, searched exactly; the smallest of
        # their exact distances is a floor the (m+1)-th largest exact distance reaches.
        # Round 2: every patch whose upper bound reaches that floor, searched exactly.
        mm = min(m + 1, per)
        known = torch.zeros(n_img, per, dtype=torch.bool)
        exact = hi.clone()
        first = hi.topk(mm, dim=1).indices
        known.scatter_(1, first, True)
        _search_exact(std_new, bank, known, exact, lo, hi)
        floor = exact.gather(1, first).amin(1, keepdim=True)
        more = (hi >= floor) & ~known
        known |= more
        _search_exact(std_new, bank, more, exact, lo, hi)
        d = torch.where(known, exact, torch.zeros_like(exact))  # the others cannot be in the top m + 1
    dist = d.clamp_min(1e-12).sqrt()
    rows, bound = top_patches(raw_new.view(n_img, per, -1), dist, m)
    dist = patch_view.clamp_min(1e-12).sqrt()
    ids = torch.arange(first_id, first_id + n_img)
    return NewImagePatches(ids, rows, bound, dist.view(n_img, *grid))


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
    if old_source is not None:
        report.removed_ids = sorted(set(old_source[drop].tolist()) - set(source.tolist()))
    _install(model, kept.to(model.mean.device), nbrs.to(model.mean.device), source)
    report.rows_removed = int(drop.sum())
    report.bank_rows_after = kept.shape[0]
    report.target_rows = full_refit_rows(model, max(stats.n, 1))
    return report
