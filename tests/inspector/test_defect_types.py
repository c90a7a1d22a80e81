"""Defect types from a handful of examples: new versions, pending types, the gate through updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.defect_types import GATE_JSON, classify, load_type_gate, train_types
from inspector.errors import ConfigError
from inspector.explain import HEAD_JSON, Explainer
from inspector.feedback_data import manifest_examples
from inspector.manifest import Manifest
from inspector.model_update import update_model
from inspector.pipeline import Inspector
from inspector.training import load_items


@pytest.fixture(scope="module")
def examples(synthetic_pills):
    root, manifest, _ = synthetic_pills
    return root, manifest, manifest_examples(manifest, root)


def test_a_pending_type_is_never_named(examples, trained_tiny, tmp_path: Path) -> None:
    root, manifest, ex = examples
    few = [e for e in ex if e.defect_type == "dirt"] + [e for e in ex if e.defect_type == "chip"][:2]
    v = tmp_path / "v-few"
    summary = train_types(trained_tiny, v, few, min_examples=3)
    assert summary["ready"] == ["dirt"] and not (v / HEAD_JSON).exists()  # one ready type: no head, gate only
    chips = [it for it in manifest.items if it.defect == "chip"]
    names = [d.name for d in classify(Inspector.load(v, "cpu"), load_items(chips, root))]
    assert "chip" not in names and set(names) <= {"dirt", "unknown type"}
    # The station's one-pass analyser applies the same gate as classify() and Explainer.
    from inspector.analysis import FrameAnalyser

    analyser = FrameAnalyser.load(Inspector.load(v, "cpu"))
    assert analyser.type_gate is not None
    judged = [a for a in analyser.analyse(load_items(chips, root)) if a.result.verdict != "OK"]
    assert judged and all(a.extras["defect_type"] in {"dirt", "unknown type"} for a in judged)
    with pytest.raises(ConfigError, match="not empty"):
        train_types(trained_tiny, v, few)


def test_enough_examples_make_a_head_that_survives_an_update(examples, trained_tiny, tmp_path: Path) -> None:
    root, manifest, ex = examples
    v2 = tmp_path / "v2"
    summary = train_types(trained_tiny, v2, ex, min_examples=3)
    assert sorted(summary["ready"]) == ["chip", "dirt"] and (v2 / HEAD_JSON).exists()
    training = [e.image for e in ex]
    names = [d.name for d in classify(Inspector.load(v2, "cpu"), training)]
    hits = sum(n == e.defect_type for n, e in zip(names, ex, strict=True))
    assert hits >= len(ex) // 2  # its own examples: mostly named right, none forced to a wrong type silently
    good = Manifest("g", [it for it in manifest.split("test") if not it.is_anomalous][:2])
    v3 = tmp_path / "v3"
    update_model(v2, v3, root, add=good, device="cpu")
    assert load_type_gate(v3) is not None
    head = json.loads((v3 / HEAD_JSON).read_text())
    assert head["model_memory_bank_sha256"] == json.loads((v3 / "model.json").read_text())["memory_bank_sha256"]
    assert json.loads((v3 / GATE_JSON).read_text())["classes"] == ["chip", "dirt"]
    assert head["descriptor"] == json.loads((v3 / GATE_JSON).read_text())["descriptor"] == "defect-centred"
    explainer = Explainer.load(Inspector.load(v3, "cpu"))
    e = explainer.explain(ex[0].image, ("anomaly",))
    assert e.defect_type in (None, "chip", "dirt", "unknown type")
    assert explainer.type_gate is not None


def test_defect_centred_types_are_read_alike_by_classify_and_the_station(examples, trained_tiny, tmp_path) -> None:
    root, manifest, ex = examples
    v = tmp_path / "v-centred"
    summary = train_types(trained_tiny, v, ex, min_examples=3, descriptor="defect-centred")
    assert summary["descriptor"] == "defect-centred"
    doc = json.loads((v / GATE_JSON).read_text())
    assert doc["gate_version"] == 2 and doc["descriptor"] == "defect-centred"
    assert json.loads((v / HEAD_JSON).read_text())["descriptor"] == "defect-centred"
    from inspector.analysis import FrameAnalyser

    images = [e.image for e in ex]
    by_classify = [d.name for d in classify(Inspector.load(v, "cpu"), images)]
    analysed = FrameAnalyser.load(Inspector.load(v, "cpu")).analyse(images)
    pairs = zip(analysed, by_classify, strict=True)
    flagged = [(a.extras["defect_type"], n) for a, n in pairs if a.extras["defect_type"]]
    assert flagged and all(station == offline for station, offline in flagged)  # same descriptor, same pass
    with pytest.raises(ConfigError, match="descriptor"):
        train_types(trained_tiny, tmp_path / "v-bad", ex, descriptor="whole")
    explainer = Explainer.load(Inspector.load(v, "cpu"))
    assert "defect-gradcam" in explainer.explain(ex[0].image, ("anomaly", "defect-gradcam")).maps
    with pytest.raises(ConfigError, match="defect-cam"):
        explainer.explain(ex[0].image, ("anomaly", "defect-cam"))
