"""Runs every attack of issue 12 against fresh audit stores and prints a table for docs/measured.md.

Run: .venv/bin/python scripts/attack_audit.py [--markdown]
Trains a tiny random-weight model on synthetic pills first (nothing is downloaded). Each attack
gets its own store in a temporary folder. Prints one row per attack: the attack, whether it was
caught (refused, or reported by verify naming record and actor), and what was said. Exits 1 if
any attack went unnoticed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.security.attacks import ATTACKS  # noqa: E402
from tests.security.lab import Lab  # noqa: E402


def tiny_model(work: Path) -> tuple[Path, list[tuple[str, bytes]]]:
    """A tiny model on synthetic pills (about 10 s on 2 cores) and three test frames."""
    import torch

    from inspector.synthetic import write_dataset
    from inspector.training import train
    from models.patchcore import PatchCoreConfig

    data = work / "data"
    manifest = write_dataset(data, "pill", n_train=16, n_test_good=6, n_test_defect=4, size=96)
    config = PatchCoreConfig(
        layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, feature_stride=8
    )
    torch.manual_seed(0)
    train(manifest, data, work / "model", config=config, device="cpu", holdout_share=0.25)
    frames = [(Path(it.path).name, (data / it.path).read_bytes()) for it in manifest.split("test")[:3]]
    return work / "model", frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="Print a Markdown table.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="attack-audit-") as tmp:
        work = Path(tmp)
        model, frames = tiny_model(work)
        template = Lab.build(work / "template", model, frames)
        rows = []
        for i, attack in enumerate(ATTACKS):
            t0 = time.perf_counter()
            lab = template.copy(work / f"lab-{i}")
            try:
                caught, message = attack.run(lab)
            except Exception as exc:  # an attack that crashes the store is reported, not hidden
                caught, message = False, f"crashed: {type(exc).__name__}: {exc}"
            finally:
                lab.close()
            message = message.replace(str(work), "<tmp>").replace("\n", " ")
            rows.append((attack.name, caught, message, time.perf_counter() - t0))
    if args.markdown:
        print("| attack | caught? | message |")
        print("|---|---|---|")
        for name, caught, message, _ in rows:
            short = message if len(message) <= 220 else message[:217] + "..."
            print(f"| {name} | {'yes' if caught else '**NO**'} | {short.replace('|', '/')} |")
    else:
        for name, caught, message, secs in rows:
            print(f"{'CAUGHT' if caught else 'MISSED':7s} {secs:5.1f}s  {name}\n        {message[:300]}")
    missed = sum(not r[1] for r in rows)
    print(f"\n{len(rows) - missed}/{len(rows)} attacks caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
