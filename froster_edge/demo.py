"""`make demo`'s one decision: zero-shot CLIP when its weights can be had, the offline pipeline otherwise.

`python -m froster_edge.demo MODEL PRETRAINED` exits 0 when the weights are a local file, their host
answers, or they are in open_clip's cache; 10 after one line when unreachable (the Makefile then
trains, exports and runs the tiny student); 1 on a bad MODEL or PRETRAINED. No model is built and
nothing is downloaded.

See docs/install.md.
"""

from __future__ import annotations

import os
import sys

from .errors import FrosterError
from .reachability import hub_address, reachable

UNREACHABLE = 10  # not an exit code of the CLI (1 bad input, 2 usage, 3 missing capability)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m froster_edge.demo MODEL PRETRAINED", file=sys.stderr)
        return 2
    model, pretrained = args
    address = hub_address()
    if os.path.isfile(pretrained) or (address is not None and reachable(address)):
        return 0  # open_clip's tags download from the hub; the export says so if this one cannot
    from .model.clip import pretrained_unavailable

    try:
        reason = pretrained_unavailable(model, pretrained)
    except FrosterError as e:
        print(f"froster-edge demo: error: {e}", file=sys.stderr)
        return e.exit_code
    if reason is None:
        return 0
    print(f"froster-edge demo: {reason}; running the offline pipeline instead (a tiny student trained on the "
          "five bundled clips: it shows the pipeline, not accuracy)", flush=True)
    return UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
