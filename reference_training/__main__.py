"""``python -m reference_training`` is ``glf-train``."""

import sys

from reference_training.cli import main

# Guarded: data-parallel workers are spawned processes that import this module again.
if __name__ == "__main__":
    sys.exit(main())
