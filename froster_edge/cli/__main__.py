"""`python -m froster_edge.cli` (torchrun runs training this way).

See docs/cli.md.
"""

from .base import main

main()
