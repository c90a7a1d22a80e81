"""The open-set gate: a known type stays known, a new one is 'unknown type' until it has enough examples."""

import pytest
import torch

from models.explain import fit_defect_head
from models.explain.type_gate import UNKNOWN, TypeGate

DIM = 32


def _cluster(centre: float, axis: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    x[:, axis] += centre
    return x


def test_unseen_type_is_unknown_and_known_type_is_named() -> None:
    dirt = _cluster(8.0, 0, 30, 0)
    gate = TypeGate.fit(dirt, ["dirt"] * 30)
    held_dirt, chip = _cluster(8.0, 0, 40, 1), _cluster(8.0, 1, 40, 2)
    dirt_names = [d.name for d in gate.decide(held_dirt)]
    chip_names = [d.name for d in gate.decide(chip)]
    assert dirt_names.count("dirt") >= 32  # about 5% of a known type may be called unknown, by design
    assert chip_names.count(UNKNOWN) == 40  # never forced into the one known type


def test_pending_type_is_unknown_until_it_has_enough_examples() -> None:
    dirt, chip = _cluster(8.0, 0, 30, 0), _cluster(8.0, 1, 12, 3)
    held = _cluster(8.0, 1, 20, 4)
    few = TypeGate.fit(torch.cat([dirt, chip[:3]]), ["dirt"] * 30 + ["chip"] * 3, min_examples=5)
    assert few.ready == ["dirt"]
    decisions = few.decide(held)
    assert all(d.name == UNKNOWN for d in decisions) and {d.nearest for d in decisions} == {"chip"}
    enough = TypeGate.fit(torch.cat([dirt, chip]), ["dirt"] * 30 + ["chip"] * 12, min_examples=5)
    assert sorted(enough.ready) == ["chip", "dirt"]
    assert sum(d.name == "chip" for d in enough.decide(held)) >= 18


def test_gate_overrules_the_head_far_from_its_examples() -> None:
    dirt, chip = _cluster(8.0, 0, 30, 0), _cluster(8.0, 1, 10, 3)
    x = torch.cat([dirt, chip])
    labels = ["dirt"] * 30 + ["chip"] * 10
    head = fit_defect_head(x, torch.tensor([1] * 30 + [0] * 10), ["chip", "dirt"], ["a"])
    gate = TypeGate.fit(x, labels)
    scratch = _cluster(12.0, 2, 10, 5)  # a third type: the head still names chip or dirt
    with torch.no_grad():
        forced = head(scratch).argmax(1)
        assert forced.numel() == 10  # the head always answers
        decisions = gate.decide(scratch, head(scratch), head.classes)
        held = gate.decide(_cluster(8.0, 1, 10, 6), head(_cluster(8.0, 1, 10, 6)), head.classes)
    assert all(d.name == UNKNOWN for d in decisions)
    assert sum(d.name == "chip" for d in held) >= 8


def test_gate_round_trips_and_refuses_bad_input() -> None:
    x = _cluster(8.0, 0, 10, 0)
    gate = TypeGate.fit(x, ["dirt"] * 10)
    again = TypeGate.from_saved(gate.to_json(), gate.tensors())
    assert [d.name for d in again.decide(x)] == [d.name for d in gate.decide(x)]
    with pytest.raises(ValueError, match="two or more"):
        TypeGate.fit(x[:1], ["dirt"])
    with pytest.raises(ValueError, match="one type name per row"):
        TypeGate.fit(x, ["dirt"] * 9)


def test_gate_records_its_descriptor_and_reads_version_1_files_as_pooled() -> None:
    x = _cluster(8.0, 0, 10, 0)
    gate = TypeGate.fit(x, ["dirt"] * 10, descriptor="defect-centred")
    doc = gate.to_json()
    assert doc["gate_version"] == 2 and TypeGate.from_saved(doc, gate.tensors()).descriptor == "defect-centred"
    old = {k: v for k, v in doc.items() if k not in ("gate_version", "descriptor")}  # as saved before version 2
    assert TypeGate.from_saved(old, gate.tensors()).descriptor == "pooled"
    with pytest.raises(ValueError, match="newer than this program"):
        TypeGate.from_saved({**doc, "gate_version": 3}, gate.tensors())
    with pytest.raises(ValueError, match="unknown defect descriptor"):
        TypeGate.from_saved({**doc, "descriptor": "whole"}, gate.tensors())
