"""``python -m webhooklite``: the command line (see ``webhooklite/cli/``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
