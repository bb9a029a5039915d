"""Export a student to a bundle from Python, and read the bundle back.

    python examples/export_bundle.py --student students/mine -o bundles/mine

Needs the `train` extra. The same as `froster-edge export --student DIR --classes FILE --videos
CLIP -o BUNDLE`: ONNX encoders, the label table and the manifest, written only when every parity
gate passes on the clips given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from froster_edge.bundle.labels import load_labels
from froster_edge.bundle.manifest import verify_bundle
from froster_edge.export.bundle import export_bundle
from froster_edge.export.options import ExportOptions
from froster_edge.model.checkpoint import load_student
from froster_edge.prompts import read_class_texts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True, help="a student directory (train, average, import-froster)")
    parser.add_argument("--classes", default="examples/clips/classes.txt")
    parser.add_argument("--videos", nargs="+", default=["examples/clips/stgcn_clean_and_jerk.mp4"])
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args(argv)

    result = export_bundle(load_student(args.student), args.out, read_class_texts(args.classes),
                           [Path(v) for v in args.videos], ExportOptions(streams=1))
    for gate in result.manifest["parity"]["gates"]:
        print(gate)                                                   # max_abs, min_cosine, top1_agreement, passed
    manifest = verify_bundle(args.out)                                # re-hashes every file; names a tampered one
    table = load_labels(Path(args.out) / "labels.npz", manifest["model"]["fingerprint"])
    print(f"{args.out}: {len(table.names)} classes, embeddings {table.embeddings.shape}")
    return manifest


if __name__ == "__main__":
    main()
