"""``python -m das_assert``: see ``das_assert.cli``."""

import sys

from das_assert.cli import main

if __name__ == "__main__":
    sys.exit(main())
