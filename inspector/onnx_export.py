"""ONNX export of a trained model, and inspection through ONNX Runtime.

The exported graph takes images already resized to the model's input size, float in [0, 1],
(B, 3, S, S), and returns ``score`` (B,) and ``anomaly_map`` (B, S, S): resizing stays with the
caller (as in ``inspector.preprocess``) so any runtime can feed it. The thresholds, settings and
provenance travel in the file's ``metadata_props``, so one ``.onnx`` file is a complete model for
``inspector predict --onnx FILE``; a file without them is refused rather than guessed at.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.calibration import Thresholds
from inspector.errors import ConfigError, ModelError
from inspector.pipeline import InspectionResult, Inspector, ModelInfo, inspect_batch
from models.patchcore import PatchCore

FORMAT = "inspector-patchcore-onnx"
FORMAT_VERSION = "1"
META_PREFIX = "inspector."


class ScoreAndMap(nn.Module):
    """PatchCore as a pure function images -> (score, anomaly_map), on the exact fp32 path.

    The exact path is one matrix product per batch with no data-dependent control flow, so it
    traces into a static graph; its scores equal the torch model's (the fast CPU path of
    ``PatchCore.predict`` returns the same scores, certified, see ``models.components.nearest``).
    """

    def __init__(self, model: PatchCore) -> None:
        super().__init__()
        self.model = model
        self.hw = model.config.input_hw

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, hw = self.model, self.hw
        # Sizes as Python constants, not traced shapes: pooling and resizing stay static ops.
        feats = m.extractor(m.normalize(images))
        score, patch = m.score_features(feats, hw, exact=True)
        return score, m.pixel_map(feats, patch, hw)


def export_onnx(model: PatchCore, path: str | Path, metadata: dict[str, Any], opset: int = 18) -> Path:
    """Writes ``model`` to ``path`` with ``metadata`` (JSON-encoded) in its metadata_props."""
    import onnx

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = model.config.input_hw
    wrapper = ScoreAndMap(model.cpu().eval())
    example = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    tmp = out.with_suffix(out.suffix + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            dynamo=False,  # the dynamo exporter needs onnxscript; this graph traces statically
            input_names=["images"],
            output_names=["score", "anomaly_map"],
            dynamic_axes={"images": {0: "batch"}, "score": {0: "batch"}, "anomaly_map": {0: "batch"}},
            opset_version=opset,
        )
    proto = onnx.load(str(tmp))
    props = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = json.dumps(value, sort_keys=True)  # every value JSON, strings too
    proto.producer_name = "inspector"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


def export_model_dir(model_dir: str | Path, path: str | Path, opset: int = 18) -> dict[str, Any]:
    """Exports a model directory with its thresholds; returns a summary for the CLI."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the 'onnx' package: pip install 'inspector[onnx]'") from None
    inspector = Inspector.load(model_dir, "cpu")
    if inspector.model.config.keep_aspect:
        raise ConfigError(
            f"{model_dir} keeps each frame's aspect, so its input size changes from frame to frame; an ONNX graph"
            " has one fixed size. Run it with the torch runtime, or train a version with --squash-aspect to export"
        )
    info = inspector.info
    meta = {
        "thresholds": inspector.thresholds.to_json(),
        "config": inspector.model.config.to_json(),
        "memory_bank_sha256": info.weights_sha256,
        "manifest_sha256": info.manifest_sha256,
        "trained_at": info.trained_at,
        "source_model_dir": info.model_dir,
        "input_size": info.input_size,
        "input_hw": list(inspector.model.config.input_hw),
    }
    out = export_onnx(inspector.model, path, meta, opset)
    h, w = inspector.model.config.input_hw
    return {"path": str(out), "size_mb": out.stat().st_size / 1e6, "input_shape": f"(B, 3, {h}, {w})"}


class OnnxInspector:
    """An exported model run by ONNX Runtime, with the same ``inspect_images`` as ``Inspector``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running ONNX models needs onnxruntime: pip install 'inspector[onnx]'") from None
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"ONNX model not found: {p}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
            raise ModelError(f"{p} is not a readable ONNX model ({type(exc).__name__})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        try:
            meta = {k[len(META_PREFIX) :]: json.loads(v) for k, v in raw.items() if k.startswith(META_PREFIX)}
        except ValueError:
            raise ModelError(f"{p} has unreadable inspector metadata") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{p} was not exported by inspector export (its thresholds are missing)")
        try:
            self.thresholds = Thresholds.from_json(meta["thresholds"])
            self.input_size = int(meta["input_size"])
            # Files from before non-square inputs carry only the square size.
            hw = meta.get("input_hw") or [self.input_size, self.input_size]
            self.input_hw = (int(hw[0]), int(hw[1]))
            config = dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{p} has incomplete inspector metadata: {exc}") from None
        self.info = ModelInfo(
            str(p.resolve()),
            str(meta.get("memory_bank_sha256", "")),
            str(config.get("backbone", "?")),
            tuple(config.get("layers", ())),
            self.input_size,
            meta.get("manifest_sha256"),
            {},
            meta.get("trained_at"),
        )

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, S, S) float32 in [0, 1] -> scores (B,) and maps (B, S, S)."""
        score, amap = self.session.run(["score", "anomaly_map"], {"images": np.ascontiguousarray(batch, np.float32)})
        return score, amap

    def inspect_images(
        self, images: Sequence[np.ndarray], *, sources: Sequence[str] | None = None, start_index: int = 0
    ) -> list[InspectionResult]:
        """Scores RGB uint8 frames as ``Inspector.inspect_images`` does, through ONNX Runtime."""
        return inspect_batch(
            images,
            self.input_hw,
            lambda batch: self.predict(batch.numpy()),
            self.thresholds,
            sources,
            start_index,
            {"runtime": "onnxruntime"},
        )
