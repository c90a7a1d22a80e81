"""Model directories: tensors in safetensors, everything else in JSON, nothing pickled.

A model directory holds ``model.json`` (format version, PatchCore settings, the caller's
metadata such as thresholds and manifest hash) and ``memory_bank.safetensors``. Backbone
weights are not copied: they are rebuilt from the named backbone and checked by hash, so a
model made for another backbone or other weights is refused instead of scoring nonsense.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.backbones import BackboneError
from models.patchcore.model import PatchCore, PatchCoreConfig

FORMAT = "inspector-patchcore"
FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
TENSOR_FILE = "memory_bank.safetensors"


class ModelFileError(RuntimeError):
    """A model directory is missing, truncated, from elsewhere, or made for another backbone."""


def backbone_fingerprint(model: PatchCore) -> str:
    """sha256 of the extractor's weights as built, before inference rewrites (batch-norm folding)."""
    return model.extractor.weights_sha256


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_patchcore(model: PatchCore, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Writes the model; returns the directory. Files are written then renamed into place."""
    if not model.is_fitted:
        raise ModelFileError("refusing to save a PatchCore model with no memory bank")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "memory_bank": model.memory_bank.detach().cpu().contiguous(),
        "bank_neighbours": model.bank_neighbours.detach().cpu().contiguous(),
    }
    if model.bank_source.numel():
        tensors["bank_source"] = model.bank_source.detach().cpu().contiguous()
    if model.channel_mean.numel():
        tensors["channel_mean"] = model.channel_mean.detach().cpu().contiguous()
        tensors["channel_scale"] = model.channel_scale.detach().cpu().contiguous()
    fine = model.fine_map
    if fine is not None and fine.is_fitted:
        tensors["map_bank"] = fine.bank.detach().cpu().contiguous()
        tensors["map_channel_mean"] = fine.channel_mean.detach().cpu().contiguous()
        tensors["map_channel_scale"] = fine.channel_scale.detach().cpu().contiguous()
        tensors["map_unit"] = fine.unit.detach().cpu().reshape(1).contiguous()
        if fine.bank_source.numel():  # which image each row came from: leave-one-out recalibration
            tensors["map_bank_source"] = fine.bank_source.detach().cpu().contiguous()
    if model.score_scale.numel():
        tensors["score_scale"] = model.score_scale.detach().cpu().contiguous()
    tmp = out / (TENSOR_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / TENSOR_FILE)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "backbone_sha256": backbone_fingerprint(model),
        "memory_bank_sha256": file_sha256(out / TENSOR_FILE),
        "memory_bank_shape": list(model.memory_bank.shape),
        "versions": {"torch": torch.__version__},
        "metadata": metadata or {},
    }
    tmp_json = out / (CONFIG_FILE + ".tmp")
    tmp_json.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp_json.replace(out / CONFIG_FILE)
    return out


def read_model_json(directory: str | Path) -> dict[str, Any]:
    """Reads and checks ``model.json`` without building the model (cheap; for listings)."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelFileError(f"model directory not found: {d}")
    cfg = d / CONFIG_FILE
    if not cfg.is_file():
        raise ModelFileError(f"not a model directory (no {CONFIG_FILE}): {d}")
    try:
        doc = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cfg} is corrupt or truncated: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{cfg} is not an inspector PatchCore model")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{cfg} has format version {doc.get('format_version')}, this inspector reads {FORMAT_VERSION}"
        )
    return doc


def load_patchcore(directory: str | Path, device: str | torch.device = "cpu") -> tuple[PatchCore, dict[str, Any]]:
    """Loads a model directory; returns the model and its metadata. Never unpickles."""
    d = Path(directory)
    doc = read_model_json(d)
    try:
        config = PatchCoreConfig.from_json(doc["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{d / CONFIG_FILE} has invalid settings: {exc}") from exc
    tensor_path = d / TENSOR_FILE
    if not tensor_path.is_file():
        raise ModelFileError(f"model directory {d} is missing {TENSOR_FILE}")
    if file_sha256(tensor_path) != doc.get("memory_bank_sha256"):
        raise ModelFileError(f"{tensor_path} does not match its recorded sha256 (truncated or altered)")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{tensor_path} is corrupt: {exc}") from exc
    try:
        model = PatchCore(config)
    except BackboneError as exc:
        raise ModelFileError(f"model {d} needs backbone '{config.backbone}': {exc}") from exc
    if backbone_fingerprint(model) != doc.get("backbone_sha256"):
        raise ModelFileError(f"model {d} was made with other '{config.backbone}' weights than the ones available here")
    bank = tensors.get("memory_bank")
    nbrs = tensors.get("bank_neighbours")
    if bank is None or nbrs is None or bank.ndim != 2 or list(bank.shape) != doc.get("memory_bank_shape"):
        raise ModelFileError(f"{tensor_path} does not hold the memory bank described in {CONFIG_FILE}")
    expected_dim = model.embed(torch.zeros(1, 3, 32, 32)).shape[1]
    if bank.shape[1] != expected_dim:
        raise ModelFileError(
            f"memory bank has {bank.shape[1]} features per patch; backbone '{config.backbone}' with "
            f"layers {list(config.layers)} gives {expected_dim}"
        )
    if config.standardize:
        mean, scale = tensors.get("channel_mean"), tensors.get("channel_scale")
        if mean is None or scale is None or mean.shape != (bank.shape[1],) or scale.shape != mean.shape:
            raise ModelFileError(f"{tensor_path} lacks the channel statistics its settings need")
        model.channel_mean, model.channel_scale = mean.float(), scale.float()
    model.memory_bank = bank.float()
    model.bank_sq = (model.memory_bank**2).sum(1)
    model.bank_neighbours = nbrs.long()
    source = tensors.get("bank_source")  # absent in models saved before leave-one-out calibration
    if source is not None:
        if source.shape != bank.shape[:1]:
            raise ModelFileError(f"{tensor_path}: bank_source does not match the memory bank's {bank.shape[0]} rows")
        model.bank_source = source.long()
    _load_fine_map(model, tensors, tensor_path)
    if config.fine_score:
        scale = tensors.get("score_scale")
        fine_fitted = model.fine_map is not None and model.fine_map.is_fitted
        if scale is None or scale.shape != (2,) or not fine_fitted or not bool((scale > 0).all()):
            raise ModelFileError(f"{tensor_path} lacks the fine bank or the score scales its fine_score needs")
        model.score_scale = scale.float()
    model.to(device)
    return model, doc.get("metadata", {})


def _load_fine_map(model: PatchCore, tensors: dict[str, torch.Tensor], tensor_path: Path) -> None:
    """The fine map's bank where the model has one (models fitted without it keep the score grid)."""
    fine = model.fine_map
    bank = tensors.get("map_bank")
    if fine is None or bank is None:
        return
    mean, scale, unit = (tensors.get(k) for k in ("map_channel_mean", "map_channel_scale", "map_unit"))
    dim = fine.raw_embed(model.extractor(torch.zeros(1, 3, 32, 32)), (32, 32)).shape[1]
    if bank.ndim != 2 or bank.shape[1] != dim or mean is None or scale is None or unit is None:
        raise ModelFileError(f"{tensor_path}: the fine map's bank does not fit its stages {list(fine.layers)}")
    if mean.shape != (dim,) or scale.shape != (dim,) or unit.numel() != 1:
        raise ModelFileError(f"{tensor_path}: the fine map's statistics do not fit its {dim} features")
    fine.bank = bank.float().contiguous()
    fine.bank_sq = (fine.bank**2).sum(1)
    fine.channel_mean, fine.channel_scale = mean.float(), scale.float()
    fine.unit = unit.float().reshape(())
    source = tensors.get("map_bank_source")  # absent in models saved before the fine image score
    if source is not None:
        if source.shape != bank.shape[:1]:
            raise ModelFileError(f"{tensor_path}: map_bank_source does not match the fine bank's {bank.shape[0]} rows")
        fine.bank_source = source.long()
