"""`python -m froster_edge.cli` (torchrun runs training this way)."""

from .base import main

main()
