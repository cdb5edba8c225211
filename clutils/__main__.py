"""``python -m clutils``: the command line (see :mod:`clutils.cli`)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
