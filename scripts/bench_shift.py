"""Issue 16's simulated shift on pillQC: a defect type appears that the model was never shown.

    .venv/bin/python scripts/bench_shift.py [--root ../shared/data/pillqc] [--json out.json] [--seed 0]

Dirt is the known type, chip the new one. With a seeded split (``--seed``) of the labelled images:
40 dirt images are what version 1 knows of defect types; 40 dirt and 24 good test images form
the golden set, frozen in the audit store; 23 chips and 25 good parts pass the station, where an
operator rejects the chips with reason code "unknown-defect" and accepts the good parts; the
engineer confirms 10 chip candidates as the new type "chip" and every good-part overrule as good
(those frames go into the bank by an incremental update). Version 2 is the update plus the defect
head learned from the confirmed chips and the known dirt, promoted after the golden-set gate and
an e-signature. The other 20 chips and 58 dirt images are held out: never seen by anyone.

Prints what version 1 and version 2 call the held-out images, the refusal of a degraded candidate,
the audit trail's event kinds, and the result of ``audit verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORDS = {"root": "root-pass-16", "eng1": "eng1-pass-16", "op1": "op1-pass-16"}
TOLERANCE = 0.05  # two of the golden set's 40 dirt images


def main() -> None:
    data = Path(os.environ.get("INSPECTOR_REAL_DATA", ROOT.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=data / "pillqc")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data_manifests" / "pillqc.json")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.root.is_dir():
        sys.exit(f"pillQC data not found at {args.root} (give --root)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="inspector-shift-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    summary = run(args.root, args.manifest, work, args.seed)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


def run(root: Path, manifest_path: Path, work: Path, seed: int) -> dict:
    import numpy as np
    import torch

    from inspector.audit import AuditStore
    from inspector.audit.feedback import candidates, confirm
    from inspector.defect_types import classify, train_types
    from inspector.feedback_data import confirmed_defect_examples, confirmed_good_manifest, manifest_examples
    from inspector.golden import PromotionRefused, freeze, promote
    from inspector.manifest import Manifest, load_manifest
    from inspector.model_update import update_model
    from inspector.pipeline import Inspector
    from inspector.sources import FolderSource
    from inspector.station import Station
    from inspector.training import load_items, train

    torch.set_num_threads(2)
    m = load_manifest(manifest_path)
    rng = np.random.default_rng(seed)

    def shuffled(items: list) -> list:
        return [items[i] for i in rng.permutation(len(items))]

    dirt = shuffled([it for it in m.items if it.defect == "dirt"])
    chip = shuffled([it for it in m.items if it.defect == "chip"])
    good = shuffled([it for it in m.split("test") if not it.is_anomalous])
    dirt_known, dirt_golden, dirt_held = dirt[:40], dirt[40:80], dirt[80:]
    chip_stream, chip_held = chip[:23], chip[23:]
    good_golden, good_stream = good[:24], good[24:]

    print("1. version 1: PatchCore on the 100 good training images; defect types: dirt only", flush=True)
    train(Manifest("pill-train", m.split("train")), root, work / "base", device="cpu")
    v1 = work / "v1"
    train_types(work / "base", v1, manifest_examples(Manifest("dirt", dirt_known), root))

    store = AuditStore.open(work / "audit.db")
    store.add_user(None, "root", "Root Admin", "admin", PASSWORDS["root"])
    admin = store.authenticate("root", PASSWORDS["root"])
    store.add_user(admin, "eng1", "Eve Engineer", "engineer", PASSWORDS["eng1"])
    store.add_user(admin, "op1", "Oscar Operator", "operator", PASSWORDS["op1"])
    eng = store.authenticate("eng1", PASSWORDS["eng1"])
    freeze(store, eng, "pill", Manifest("golden", good_golden + dirt_golden), root)
    v1_id = promote(store, "eng1", PASSWORDS["eng1"], v1, "pill", root, tolerance=TOLERANCE)

    print("2. the station meets chips; the operator rejects them with a reason code", flush=True)
    frames = work / "line-frames"
    frames.mkdir()
    kind = {}
    for it in chip_stream + good_stream:
        name = f"{len(kind):03d}{Path(it.path).suffix}"
        shutil.copyfile(root / it.path, frames / name)
        kind[name] = "chip" if it.is_anomalous else "good"
    op = store.authenticate("op1", PASSWORDS["op1"])
    station = Station(store, Inspector.load(v1, "cpu"), "line-1")
    station.model_version_id = v1_id
    verdicts: Counter[str] = Counter()
    for item in station.run(FolderSource(frames), batch_size=8):
        assert not isinstance(item, str), item
        verdicts[(kind[item.result.source], item.result.verdict)] += 1
        if kind[item.result.source] == "chip":
            station.decide(op, item, "reject", "unknown-defect", "chipped edge, not dirt")
        else:
            station.decide(op, item, "accept", None, None if item.result.verdict == "OK" else "part is fine")

    print("3. the engineer works the feedback queue", flush=True)
    queue = candidates(store)
    chip_cands = [c for c in queue if c.decision.reason_code == "unknown-defect"]
    good_cands = [c for c in queue if c.decision.decision == "accept"]
    for c in chip_cands[:10]:
        confirm(store, eng, c.id, "defect", "chip", "new type: chipped edge")
    for c in good_cands:
        confirm(store, eng, c.id, "good", note="false alarm on a good part")

    print("4. version 2: confirmed good frames into the bank, chip learned as a type", flush=True)
    good_manifest, frames_root = confirmed_good_manifest(store)
    bank_dir = v1
    recalibration = None
    if good_manifest.items:
        bank_dir = work / "v1-updated"
        update_model(v1, bank_dir, frames_root, add=good_manifest, device="cpu", updated_by="eng1")
        meta = json.loads((bank_dir / "model.json").read_text())["metadata"]
        recalibration = {
            "thresholds_from": meta["thresholds_from"],
            "decision_before": json.loads((v1 / "model.json").read_text())["metadata"]["thresholds"]["decision"],
            "decision_after": meta["thresholds"]["decision"],
            "frr_after": meta["thresholds"]["frr"],
            **{k: v for k, v in meta.get("recalibration", {}).items() if k != "frr"},
        }
    v2 = work / "v2"
    examples = confirmed_defect_examples(store) + manifest_examples(Manifest("dirt", dirt_known), root)
    types = train_types(bank_dir, v2, examples)

    def names(model_dir: Path, items: list) -> list[str]:
        return [d.name for d in classify(Inspector.load(model_dir, "cpu"), load_items(items, root))]

    v1_chip, v2_chip = names(v1, chip_held), names(v2, chip_held)
    confirmed = {c.decision.source for c in chip_cands[:10]}
    unconfirmed = [it for i, it in enumerate(chip_stream) if f"{i:03d}{Path(it.path).suffix}" not in confirmed]
    v2_unconfirmed = names(v2, unconfirmed)
    v1_dirt, v2_dirt = names(v1, dirt_held), names(v2, dirt_held)

    print("5. promotion: a degraded candidate is refused; version 2 is signed and activated", flush=True)
    bad = work / "v2-degraded"
    shutil.copytree(v2, bad)
    doc = json.loads((bad / "model.json").read_text())
    doc["metadata"]["thresholds"].update(decision=1e9, review=1e9)
    (bad / "model.json").write_text(json.dumps(doc))
    try:
        promote(store, "eng1", PASSWORDS["eng1"], bad, "pill", root, tolerance=TOLERANCE)
        refusal = None
    except PromotionRefused as exc:
        refusal = str(exc)
    v2_id = promote(store, "eng1", PASSWORDS["eng1"], v2, "pill", root, tolerance=TOLERANCE)
    active = store.active_model()
    result = store.verify()
    kinds = Counter(ev.kind for ev in _all_events(store))
    store.close()

    def share(xs: list[str], name: str) -> float:
        return round(sum(x == name for x in xs) / len(xs), 3)

    return {
        "seed": seed,
        "station_verdicts": {f"{k}:{v}": n for (k, v), n in sorted(verdicts.items())},
        "queue": {"chip_candidates": len(chip_cands), "good_overrules": len(good_cands), "confirmed_chip": 10},
        "confirmed_good_frames_added_to_bank": len(good_manifest.items),
        "update_recalibration": recalibration,
        "types": types,
        "v1_on_heldout_chip": dict(Counter(v1_chip)),
        "v1_heldout_chip_unknown": share(v1_chip, "unknown type"),
        "v2_heldout_chip_accuracy": share(v2_chip, "chip"),
        "v2_on_heldout_chip": dict(Counter(v2_chip)),
        "v2_chip_accuracy_on_stream_chips_not_confirmed": share(v2_unconfirmed, "chip"),
        "n_stream_chips_not_confirmed": len(unconfirmed),
        "v1_heldout_dirt_accuracy": share(v1_dirt, "dirt"),
        "v2_heldout_dirt_accuracy": share(v2_dirt, "dirt"),
        "n_heldout": {"chip": len(chip_held), "dirt": len(dirt_held)},
        "refused": refusal,
        "v1_id": v1_id,
        "v2_id": v2_id,
        "active_after": active.id if active else None,
        "tolerance": TOLERANCE,
        "audit_verify_ok": result.ok,
        "audit_verify": result.summary(),
        "event_kinds": dict(kinds),
    }


def _all_events(store):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from inspector.audit.schema import EventRow

    with store._read() as s:
        return list(s.scalars(select(EventRow).order_by(EventRow.id)))


if __name__ == "__main__":
    main()
