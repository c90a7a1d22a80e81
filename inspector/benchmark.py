"""Side-by-side benchmark: inspector's PatchCore against anomalib's, in one process.

Both models see the same backbone weights, the same decoded and resized training images, the
same coreset ratio and the same normalised inputs; only the PatchCore code differs. Inference
is timed interleaved (ours, anomalib's, the bare backbone, in turn, repeated) so that a busy
machine slows all three alike, and the median is kept. It also answers "will this PC keep up
with my line?": frames per second at batch 1 (latency-bound) and batch 8 (throughput).
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector import metrics
from inspector.errors import ManifestError
from inspector.manifest import Manifest, require_training_items
from inspector.preprocess import resolve_device, to_batch
from inspector.training import load_items
from models.backbones import FeatureExtractor, build_body
from models.patchcore import PatchCore, PatchCoreConfig

SIDE_BY_SIDE_LAYERS = ("blocks.2", "blocks.4")  # anomalib's choice for efficientnet-lite0
SIDE_BY_SIDE_SIZE = 224
Echo = Callable[[str], None]


class PeakMemory:
    """Highest resident set size (and CUDA allocation) seen while the block runs.

    ``ru_maxrss`` never goes down, so a phase after a big one would inherit its peak; a
    sampling thread reading /proc gives each phase its own figure (Linux; elsewhere it falls
    back to ``ru_maxrss``).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.cuda_max_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, ValueError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def __enter__(self) -> PeakMemory:
        self.peak_rss_mb = self.rss_mb()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.cuda_max_mb = torch.cuda.max_memory_allocated(self.device) / 1e6


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(
    runners: dict[str, Callable[[], object]], frames: int, sync: Callable[[], None], repeats: int, min_s: float
) -> dict[str, float]:
    """Median milliseconds per frame of each runner, measured in turn ``repeats`` times."""
    loops: dict[str, int] = {}
    for name, fn in runners.items():  # warm up, and size each round to about min_s
        fn()
        sync()
        tic = time.perf_counter()
        fn()
        sync()
        loops[name] = max(1, int(min_s / max(time.perf_counter() - tic, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            tic = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            sync()
            samples[name].append((time.perf_counter() - tic) * 1000 / loops[name] / frames)
    return {name: statistics.median(v) for name, v in samples.items()}


def _auroc(
    score_fn: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[torch.Tensor], labels: np.ndarray
) -> float:
    scores = np.concatenate([score_fn(b).float().cpu().numpy() for b in batches])
    auroc = metrics.image_auroc(scores, labels)
    if auroc is None:
        raise ManifestError("the test split needs both good and defective images for an AUROC")
    return auroc


def _bank_mb(model: Any) -> float:
    bank = model.memory_bank
    return bank.numel() * bank.element_size() / 1e6


def _fit_ours(config: PatchCoreConfig, train: Sequence[torch.Tensor], device: torch.device) -> tuple[PatchCore, float]:
    torch.manual_seed(config.seed)
    model = PatchCore(config).to(device)
    sync = _sync(device)
    sync()
    tic = time.perf_counter()
    model.fit(b.to(device) for b in train)
    sync()
    return model, time.perf_counter() - tic


def _entry(
    fit_s: float, ms_b1: float, ms_b8: float, auroc: float, bank_mb: float, mem: dict[str, Any]
) -> dict[str, Any]:
    return {
        "fit_s": round(fit_s, 3),
        "ms_b1": round(ms_b1, 3),
        "ms_b8": round(ms_b8, 3),
        "fps_b1": round(1000 / ms_b1, 1),
        "fps_b8": round(1000 / ms_b8, 1),
        "image_auroc": round(auroc, 5),
        "bank_mb": round(bank_mb, 2),
        **mem,
    }


def _mem(fit: PeakMemory, infer: PeakMemory) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peak_rss_fit_mb": round(fit.peak_rss_mb, 1),
        "peak_rss_infer_mb": round(infer.peak_rss_mb, 1),
    }
    if fit.cuda_max_mb is not None:
        out["cuda_max_allocated_fit_mb"] = round(fit.cuda_max_mb, 1)
        out["cuda_max_allocated_infer_mb"] = round(infer.cuda_max_mb or 0.0, 1)
    return out


def run_benchmark(
    manifest: Manifest,
    root: str | Path,
    *,
    device: str = "auto",
    coreset_ratio: float = 0.1,
    reference: bool = True,
    default_config: PatchCoreConfig | None = None,
    seed: int = 0,
    repeats: int = 7,
    min_round_s: float = 0.3,
    reference_budget_s: float = 1500.0,
    pretrained: bool = True,
    side_layers: tuple[str, ...] = SIDE_BY_SIDE_LAYERS,
    side_size: int = SIDE_BY_SIDE_SIZE,
    ours_default: bool = True,
    echo: Echo | None = None,
) -> dict[str, Any]:
    """Fits and times ours (anomalib's settings, and our defaults) and anomalib's; returns the report.

    ``pretrained=False`` (random backbone weights) and smaller ``side_*`` settings exist for
    fast tests only. With ``reference=False`` the anomalib entry and the ratios that need it
    are null.
    """
    say = echo or (lambda _m: None)
    dev = resolve_device(device)
    train_items, test_items = require_training_items(manifest), manifest.split("test")
    if not test_items:
        raise ManifestError(f"{manifest.name}: no test images to measure AUROC on")
    base = default_config or PatchCoreConfig()
    base = replace(base, coreset_ratio=coreset_ratio, seed=seed, pretrained=pretrained and base.pretrained)
    side = replace(base, layers=side_layers, input_size=side_size, feature_stride=None)
    plain: dict[str, Any] = {"fine_pool": "avg", "standardize": False}  # no counterpart in anomalib
    side = replace(side, **{k: v for k, v in plain.items() if hasattr(side, k)})
    say(f"loading {len(train_items)} training and {len(test_items)} test images")
    data = _Data(load_items(train_items, root), load_items(test_items, root), [it.is_anomalous for it in test_items])
    report: dict[str, Any] = {
        "dataset": manifest.name,
        "n_train": len(train_items),
        "n_test": len(test_items),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "side_by_side": {"layers": list(side_layers), "input_size": side_size},
        "coreset_ratio": coreset_ratio,
    }
    timing = _Timing(dev, repeats, min_round_s)
    report.update(_side_by_side(side, data, timing, reference, reference_budget_s, say))
    report["ratios"] = _ratios(report)
    report["ours_default"] = None
    if ours_default:
        say("fitting inspector (its default settings)")
        report["ours_default"] = _ours_alone(base, data, timing)
    return report


class _Data:
    """Decoded frames, resized once per input size and batched like the CLI does."""

    def __init__(self, train: list[np.ndarray], test: list[np.ndarray], anomalous: list[bool]) -> None:
        self.train, self.test = train, test
        self.labels = np.array(anomalous, dtype=int)

    def batches(self, which: str, size: int, bs: int) -> list[torch.Tensor]:
        images = self.train if which == "train" else self.test
        return [to_batch(images[i : i + bs], size) for i in range(0, len(images), bs)]

    def probe(self, size: int) -> torch.Tensor:
        """Eight test frames (repeated where the split is smaller) for the timed runs."""
        x = to_batch(self.test[:8], size)
        return torch.cat([x] * (-(-8 // x.shape[0])))[:8]


class _Timing:
    def __init__(self, device: torch.device, repeats: int, min_round_s: float) -> None:
        self.device, self.repeats, self.min_round_s = device, repeats, min_round_s
        self.sync = _sync(device)

    def per_frame(self, make: dict[str, Callable[[torch.Tensor], Callable[[], object]]], x8: torch.Tensor) -> dict:
        """{batch: {name: ms per frame}} at batch 1 and 8, runners interleaved."""
        out = {}
        for bs in (1, 8):
            x = x8[:bs]
            out[bs] = time_interleaved(
                {k: f(x) for k, f in make.items()}, bs, self.sync, self.repeats, self.min_round_s
            )
        return out


def _side_by_side(
    side: PatchCoreConfig, data: _Data, timing: _Timing, reference: bool, budget_s: float, say: Echo
) -> dict[str, Any]:
    dev = timing.device
    train_t = data.batches("train", side.input_size, 16)
    test_t = data.batches("test", side.input_size, 8)
    say("fitting inspector (side-by-side settings)")
    with PeakMemory(dev) as fit_mem:
        ours, ours_fit_s = _fit_ours(side, train_t, dev)
    # The network as timm defines it, with the same weights (ours is rewritten for inference):
    # anomalib copies its weights, and it is timed alone as the plain backbone.
    body = build_body(side.backbone, side.weights, side.pretrained, side.seed)
    ref_model, ref_fit = None, None
    if reference:
        from inspector.bench_reference import build_reference, fit_reference

        say("fitting anomalib PatchcoreModel (same weights, images and ratio)")
        ref_model = build_reference(side.backbone, side.layers, body, side.num_neighbours).to(dev)
        with PeakMemory(dev) as ref_fit_mem:
            ref_fit = fit_reference(
                ref_model,
                train_t,
                ours.normalize,
                side.coreset_ratio,
                side.seed,
                budget_s,
                ours.memory_bank,
                timing.sync,
            )

    plain = FeatureExtractor(body, side.layers).to(dev, memory_format=torch.channels_last)

    def backbone(extractor: FeatureExtractor) -> Callable[[torch.Tensor], Callable[[], object]]:
        def make(x: torch.Tensor) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return extractor(ours.normalize(x.to(dev)).contiguous(memory_format=torch.channels_last))

            return run

        return make

    runners: dict[str, Callable[[torch.Tensor], Callable[[], object]]] = {
        "ours": lambda x: lambda: _to_host(ours.predict(x.to(dev))),
        # The floor: our own (batch-norm folded) backbone alone, the strictest reference.
        "backbone": backbone(ours.extractor),
        # The same network as timm defines it, as anomalib and most code run it.
        "backbone_plain": backbone(plain),
    }
    if ref_model is not None:
        from inspector.bench_reference import reference_predict

        runners["anomalib"] = lambda x: (
            lambda: [t.cpu() for t in reference_predict(ref_model, ours.normalize(x.to(dev)))]
        )
    say("timing inference (interleaved)")
    with PeakMemory(dev) as infer_mem:
        ms = timing.per_frame(runners, data.probe(side.input_size))
        auroc = _auroc(lambda b: ours.predict(b.to(dev)).score, test_t, data.labels)
    out: dict[str, Any] = {
        "ours": _entry(ours_fit_s, ms[1]["ours"], ms[8]["ours"], auroc, _bank_mb(ours), _mem(fit_mem, infer_mem)),
        "backbone_ms_b1": round(ms[1]["backbone"], 3),
        "backbone_ms_b8": round(ms[8]["backbone"], 3),
        "backbone_plain_ms_b1": round(ms[1]["backbone_plain"], 3),
        "backbone_plain_ms_b8": round(ms[8]["backbone_plain"], 3),
        "anomalib": None,
    }
    if ref_model is not None and ref_fit is not None:
        from inspector.bench_reference import anomalib_version, reference_predict

        with PeakMemory(dev) as ref_infer_mem:
            ref_auroc = _auroc(
                lambda b: reference_predict(ref_model, ours.normalize(b.to(dev)))[0], test_t, data.labels
            )
        mem = _mem(ref_fit_mem, ref_infer_mem)
        entry = _entry(ref_fit.fit_s, ms[1]["anomalib"], ms[8]["anomalib"], ref_auroc, _bank_mb(ref_model), mem)
        entry.update(
            version=anomalib_version(),
            fit_estimated=ref_fit.estimated,
            coreset_steps_per_s=round(ref_fit.coreset_steps_per_s or 0.0, 2),
            bank_source=ref_fit.bank_source,
        )
        out["anomalib"] = entry
    return out


def _ours_alone(config: PatchCoreConfig, data: _Data, timing: _Timing) -> dict[str, Any]:
    dev = timing.device
    with PeakMemory(dev) as fit_mem:
        model, fit_s = _fit_ours(config, data.batches("train", config.input_size, 16), dev)
    with PeakMemory(dev) as infer_mem:
        ms = timing.per_frame(
            {"ours": lambda x: lambda: _to_host(model.predict(x.to(dev)))}, data.probe(config.input_size)
        )
        test_t = data.batches("test", config.input_size, 8)
        auroc = _auroc(lambda b: model.predict(b.to(dev)).score, test_t, data.labels)
    entry = _entry(fit_s, ms[1]["ours"], ms[8]["ours"], auroc, _bank_mb(model), _mem(fit_mem, infer_mem))
    entry["config"] = {"layers": list(config.layers), "input_size": config.input_size}
    return entry


def _to_host(pred: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return pred.score.cpu(), pred.anomaly_map.cpu()


def _ratios(report: dict[str, Any]) -> dict[str, float | None]:
    ours, ref = report["ours"], report["anomalib"]
    floor = report["backbone_ms_b1"]
    return {
        "fit_speedup": round(ref["fit_s"] / ours["fit_s"], 2) if ref else None,
        "infer_speedup_b1": round(ref["ms_b1"] / ours["ms_b1"], 2) if ref else None,
        "infer_speedup_b8": round(ref["ms_b8"] / ours["ms_b8"], 2) if ref else None,
        "floor_ratio_b1": round(ours["ms_b1"] / floor, 3),
        "plain_floor_ratio_b1": round(ours["ms_b1"] / report["backbone_plain_ms_b1"], 3),
        "auroc_delta": round(ours["image_auroc"] - ref["image_auroc"], 5) if ref else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"
