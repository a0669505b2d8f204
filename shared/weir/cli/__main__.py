"""`python -m weir.cli`: the `weir` command."""

from weir.cli import main

main()
