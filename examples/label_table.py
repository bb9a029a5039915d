"""Build a label table for new action names through a bundle's own text encoder, without torch.

    python examples/label_table.py BUNDLE "climbing a fence" "Waving: raising a hand and moving it" -o my_labels.npz

The same call as `froster-edge labels --bundle BUNDLE --classes FILE -o my_labels.npz`: each
action becomes the 28-template prompt ensemble plus its bare text, encoded by the bundle's ONNX
text encoder with its tokenizer.json. `froster-edge run --labels my_labels.npz` uses the table.
"""

from __future__ import annotations

import argparse

from froster_edge.bundle.labels import LabelTable
from froster_edge.bundle.relabel import relabel_bundle
from froster_edge.prompts import ClassText


def build(bundle: str, actions: list[str], out: str) -> LabelTable:
    """The table of `actions` ("name" or "Name: description"), written to `out`."""
    return relabel_bundle(bundle, [ClassText.parse(a) for a in actions], out=out)


def main(argv: list[str] | None = None) -> LabelTable:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("actions", nargs="+")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args(argv)
    table = build(args.bundle, args.actions, args.out)
    print(f"{args.out}: {len(table.names)} actions, embeddings {table.embeddings.shape}: {', '.join(table.names)}")
    return table


if __name__ == "__main__":
    main()
