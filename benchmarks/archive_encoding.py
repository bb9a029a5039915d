"""Does int8 (a per-row scale) search as float16 does? Measured on the embeddings of a real run.

A bundle (the tiny test model with random weights unless --bundle is given) runs over the clips
with an archive created as float16; every stored row is then re-encoded as int8 by the archive's
own encoder, and for every class of the bundle's label table (the queries a search would most
often see) the two rankings of the decisions are compared: the overlap of their top-k decisions,
the largest score difference, and whether the classifier's winning class (the several-queries
ranking) of each decision is the same.
Usage:
    python benchmarks/archive_encoding.py [--bundle B] [--clips DIR] [--hop 1] [--top 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stored_float16(db: Path) -> np.ndarray:
    from froster_edge.runtime.site.archive import decode_rows

    conn = sqlite3.connect(db)
    dim = int(dict(conn.execute("SELECT key, value FROM meta"))["embed_dim"])
    blobs = [e for (e,) in conn.execute("SELECT embeddings FROM blocks ORDER BY id")]
    blobs += [e for (e,) in conn.execute("SELECT embedding FROM pending ORDER BY decision")]
    conn.close()
    return np.concatenate([decode_rows(b, len(b) // (2 * dim), dim, "float16")[0] for b in blobs]).astype(np.float32)


def compare(ref: np.ndarray, texts: np.ndarray, logit_scale: float, top: int) -> dict:
    from froster_edge.runtime.site.archive import decode_rows, encode_rows

    dim = ref.shape[1]
    codes, scales = decode_rows(b"".join(encode_rows(ref, "int8")), len(ref), dim, "int8")
    q = codes.astype(np.float32) * scales[:, None]
    a, b = ref @ texts.T, q @ texts.T  # (N, K)
    overlaps = []
    for k in range(texts.shape[0]):
        ta, tb = set(np.argsort(-a[:, k])[:top]), set(np.argsort(-b[:, k])[:top])
        overlaps.append(len(ta & tb) / top)
    return {"decisions": len(ref), "classes": texts.shape[0], "top": top,
            "top_k_overlap_min": min(overlaps), "top_k_overlap_mean": float(np.mean(overlaps)),
            "max_abs_score_diff": float(np.abs(a - b).max()), "score_spread": float(a.std()),
            "max_abs_logit_diff": float(logit_scale * np.abs(a - b).max()),
            "same_winning_class": float(np.mean(a.argmax(1) == b.argmax(1)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path)
    p.add_argument("--clips", type=Path, default=ROOT / "examples" / "clips")
    p.add_argument("--hop", type=int, default=1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from froster_edge.bundle import manifest as mf
    from froster_edge.io import atomic_write_json
    from froster_edge.runtime.site.archive import open_archive
    from tests.helpers import cli, export_tiny

    clips = sorted(c for c in args.clips.iterdir() if c.suffix in (".mp4", ".avi"))
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        bundle = args.bundle
        if bundle is None:
            bundle = tmp / "tiny"
            export_tiny(bundle, clips[:1], max_parity_clips=1)
        model = mf.read_manifest(bundle)["model"]
        db = tmp / "run.db"
        open_archive(db, model["fingerprint"], int(model["embed_dim"]), "float16").close()
        sources = [a for c in clips for a in ("--source", str(c))]
        r = cli("run", "--bundle", str(bundle), *sources, "--hop", str(args.hop), "--archive", str(db), "--jsonl")
        if r.returncode != 0:
            sys.exit(r.stderr)
        ref = stored_float16(db)
        with np.load(bundle / mf.LABELS_FILE, allow_pickle=False) as z:
            texts, scale = z["embeddings"].astype(np.float32), float(z["logit_scale"])
    result = {"bundle": str(args.bundle or "tiny, random weights"), "clips": len(clips), **compare(ref, texts, scale, args.top)}
    print(result)
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
