"""The PDF export of a store holding the hard cases: a 1 MB reason, Arabic and Hebrew (right to
left), CJK, Polish diacritics and emoji, an overruled DEFECT. Prints size, pages, time and any
glyph without a font; renders one page with pdftoppm (Debian poppler-utils).

Run: .venv/bin/python scripts/audit_pdf_sample.py [--out DIR] [--page N] [--png docs/audit_pdf_page.png]

The 1 MB reason is recorded with the reason cap lifted, as a store written before the cap
(schema 0001) may hold one; the export must still wrap and paginate it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inspector.audit import AuditStore
from inspector.audit import recording as recording_mod
from inspector.audit.pdf_text import missing_glyphs

PW = "sample-pass-1"
PEOPLE = {
    "lukasz": ("Łukasz Żółkiewski", "operator"),
    "maryam": ("مريم الحسيني", "operator"),
    "noa": ("נועה כהן", "operator"),
    "wang": ("王小明 (ワン)", "operator"),
}
REASONS = [
    ("lukasz", "reject", "Rysa na krawędzi, widoczna pod lampą — odrzucam 🔍"),
    ("maryam", "reject", "شرخ واضح في حافة القرص، تم رفضه بعد الفحص اليدوي"),
    ("noa", "reject", "סדק בקצה הטבלייה, נדחה לאחר בדיקה ידנית"),
    ("wang", "accept", "边缘的痕迹是灰尘，不是缺陷。ひび割れではありません。✅ 😀"),
]


def build(db: Path) -> AuditStore:
    st = AuditStore.open(db)
    st.add_user(None, "root", "Root Admin", "admin", PW)
    admin = st.authenticate("root", PW)
    st.add_user(admin, "eng", "Eve Engineer", "engineer", PW)
    st.add_user(admin, "aud", "Ada Auditor", "auditor", PW)
    for uid, (name, role) in PEOPLE.items():
        st.add_user(admin, uid, name, role, PW)
    eng = st.authenticate("eng", PW)
    mid = st.register_model(
        eng,
        weights_hash="w" * 64,
        backbone="efficientnet_lite0",
        manifest_hash="",
        thresholds={"decision": 1.0},
        metrics={},
        model_dir="/models/pill",
    )
    st.activate_model(eng, mid, "sample")
    rng = np.random.default_rng(0)

    def inspection(i: int, verdict: str) -> int:
        return st.record_inspection(
            station="line-1",
            source=f"cam0/frame-{i:04d}.png",
            frame_index=i,
            frame=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            model_version_id=mid,
            score=1.7 if verdict == "DEFECT" else 0.4,
            threshold=1.0,
            verdict=verdict,
            anomaly_map=rng.random((48, 64), dtype=np.float32),
        )

    sessions = {uid: st.authenticate(uid, PW) for uid in PEOPLE}
    for i, (uid, decision, reason) in enumerate(REASONS):
        verdict = "DEFECT" if uid == "wang" else "OK"  # wang accepts a DEFECT: flagged as overruling the model
        st.record_decision(sessions[uid], inspection(i, verdict), decision, reason_text=reason)
    words = "Kratzer am Rand, unter der Lampe sichtbar; wiederholte Prüfung. ".split()
    huge = " ".join(words[i % len(words)] for i in range(160_000))[: 1 << 20]
    cap = recording_mod.REASON_MAX
    recording_mod.REASON_MAX = len(huge)  # a store from before the cap
    try:
        st.record_decision(sessions["lukasz"], inspection(9, "OK"), "reject", reason_text=huge)
    finally:
        recording_mod.REASON_MAX = cap
    return st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Folder for the store and the PDF (default: temporary).")
    ap.add_argument("--page", type=int, default=1, help="Page to render.")
    ap.add_argument("--png", type=Path, default=None, help="Write the rendered page here (e.g. docs/...png).")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="audit-pdf-"))
    out.mkdir(parents=True, exist_ok=True)
    st = build(out / "sample.db")
    aud = st.authenticate("aud", PW)
    pdf = out / "sample.pdf"
    t0 = time.perf_counter()
    n = st.export_pdf(aud, pdf)
    secs = time.perf_counter() - t0
    text = "".join(name for name, _ in PEOPLE.values()) + "".join(r for _, _, r in REASONS)
    missing = missing_glyphs(text)
    pages = "?"
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
        pages = next((ln.split()[-1] for ln in info.splitlines() if ln.startswith("Pages:")), "?")
    print(
        f"{n} decisions, largest reason {1 << 20:,} characters -> {pdf} ({pdf.stat().st_size / 1e6:.1f} MB, "
        f"{pages} pages) in {secs:.1f} s; glyphs without a font: {sorted(missing) or 'none'}"
    )
    if args.png is not None:
        if shutil.which("pdftoppm") is None:
            print("pdftoppm not found (Debian poppler-utils)", file=sys.stderr)
            return 1
        stem = out / "page"
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "110",
                "-f",
                str(args.page),
                "-l",
                str(args.page),
                "-singlefile",
                str(pdf),
                str(stem),
            ],
            check=True,
        )
        args.png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"{stem}.png", args.png)
        print(f"page {args.page} -> {args.png}")
    st.close()
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
