"""`python -m weir.cli`: the `weir` command."""

from weir.cli import main

if __name__ == "__main__":
    main()
