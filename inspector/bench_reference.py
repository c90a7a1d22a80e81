"""anomalib's ``PatchcoreModel`` as the benchmark's reference, on inspector's backbone weights.

anomalib is optional (``pip install 'inspector[bench]'`` or ``scripts/install_reference.sh``);
nothing here is imported unless a benchmark asks for the reference. Its backbone is built with
``pre_trained=False`` and given the very tensors inspector's model holds, so the two compare on
the same weights and nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.errors import ConfigError

ANOMALIB_BACKBONES = {f"efficientnet_lite{v}": f"tf_efficientnet_lite{v}" for v in (0, 1, 2)}
INSTALL_HINT = "pip install 'inspector[bench]' (or bash scripts/install_reference.sh)"


def anomalib_available() -> bool:
    """True when anomalib's PatchCore module imports; the benchmark then runs it beside ours."""
    try:
        import anomalib.models.image.patchcore.torch_model  # noqa: F401
    except ImportError:
        return False
    return True


def anomalib_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("anomalib")
    except Exception:  # not installed, or installed without metadata
        return None


@contextlib.contextmanager
def _quiet_tqdm() -> Iterator[None]:
    """anomalib's sampler draws its own progress bar; the benchmark prints a table instead.

    tqdm reads TQDM_DISABLE when it is imported, so the sampler module's ``tqdm`` is swapped for
    a pass-through while the benchmark runs it.
    """
    from anomalib.models.components.sampling import k_center_greedy

    old = getattr(k_center_greedy, "tqdm", None)
    k_center_greedy.tqdm = lambda iterable, *a, **k: iterable  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if old is not None:
            k_center_greedy.tqdm = old  # type: ignore[attr-defined]


@dataclass
class ReferenceFit:
    """How anomalib's fit went: its time, and whether the coreset time is measured or estimated."""

    fit_s: float
    estimated: bool
    coreset_steps_per_s: float | None
    bank_source: str


@contextlib.contextmanager
def _numpy_rng_restored() -> Iterator[None]:
    """anomalib's sparse projection draws from NumPy's global RNG (random_state=None): the fit
    seeds it for a reproducible comparison, and the caller's RNG state comes back afterwards."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def build_reference(backbone_name: str, layers: Sequence[str], body: nn.Module, num_neighbours: int) -> Any:
    """anomalib's PatchcoreModel with ``body``'s weights loaded by name (timm names on both sides)."""
    if not anomalib_available():
        raise ConfigError(f"the reference needs anomalib, which is not installed: {INSTALL_HINT}")
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    timm_name = ANOMALIB_BACKBONES.get(backbone_name)
    if timm_name is None:
        raise ConfigError(f"the anomalib reference supports {sorted(ANOMALIB_BACKBONES)}, not '{backbone_name}'")
    model = PatchcoreModel(layers=list(layers), backbone=timm_name, pre_trained=False, num_neighbors=num_neighbours)
    target = model.feature_extractor.feature_extractor
    source = body.state_dict()
    wanted = target.state_dict()
    missing = [k for k in wanted if k not in source or source[k].shape != wanted[k].shape]
    if missing:
        raise ConfigError(f"anomalib's {timm_name} does not take inspector's weights: {missing[:3]} ...")
    target.load_state_dict({k: source[k] for k in wanted})
    return model.eval()


def fit_reference(
    model: Any,
    batches: Sequence[torch.Tensor],
    normalize: Callable[[torch.Tensor], torch.Tensor],
    ratio: float,
    seed: int,
    budget_s: float,
    fallback_bank: torch.Tensor,
    sync: Callable[[], None],
) -> ReferenceFit:
    """Fits anomalib's model as its Lightning wrapper does; estimates the coreset when too slow.

    The greedy coreset's rate is probed first on anomalib's own sampler. When the whole run
    would exceed ``budget_s``, its time is estimated from that rate (steps x seconds per step,
    plus the projection) and ``fallback_bank`` is installed instead (inspector's memory bank:
    its coreset of the same patch features) so that inference and AUROC can still be compared;
    the report says so. Otherwise ``subsample_embedding`` runs for real and is timed.
    """
    from anomalib.models.components import KCenterGreedy

    device = next(model.parameters()).device
    model.train()
    sync()
    tic = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            model(normalize(b.to(device)))
    sync()
    extract_s = time.perf_counter() - tic
    embedding = torch.vstack(model.embedding_store)
    n_steps = int(embedding.shape[0] * ratio) - 1
    with _quiet_tqdm(), _numpy_rng_restored():
        torch.manual_seed(seed)
        np.random.seed(seed)
        tic = time.perf_counter()
        probe = KCenterGreedy(embedding=embedding, sampling_ratio=ratio)
        probe.model.fit(embedding)
        probe.features = probe.model.transform(embedding)
        sync()
        setup_s = time.perf_counter() - tic
        idx = torch.randint(high=embedding.shape[0], size=(1,), device=embedding.device).squeeze()
        probe_steps = max(1, min(n_steps, 50))
        tic = time.perf_counter()
        for _ in range(probe_steps):
            probe.update_distances(cluster_center=idx)
            idx = probe.get_new_idx()
        sync()
        per_step = (time.perf_counter() - tic) / probe_steps
        del probe
        estimate = setup_s + per_step * n_steps
        if estimate > budget_s:
            model.embedding_store.clear()
            model.memory_bank = fallback_bank.to(embedding.device, embedding.dtype).contiguous()
            model.eval()
            return ReferenceFit(extract_s + estimate, True, 1.0 / per_step, "inspector's memory bank")
        torch.manual_seed(seed)
        np.random.seed(seed)
        sync()
        tic = time.perf_counter()
        with warnings.catch_warnings():  # anomalib warns about an argument it is not given
            warnings.simplefilter("ignore", DeprecationWarning)
            model.subsample_embedding(sampling_ratio=ratio)
        sync()
        coreset_s = time.perf_counter() - tic
    model.eval()
    return ReferenceFit(extract_s + coreset_s, False, n_steps / max(coreset_s, 1e-9), "anomalib KCenterGreedy")


def reference_predict(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and anomaly maps from anomalib's model for images already normalised."""
    with torch.no_grad():
        out = model(x)
    return out.pred_score, out.anomaly_map
