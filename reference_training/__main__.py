"""``python -m glf_train`` is ``glf-train``."""

import sys

from glf_train.cli import main

# Guarded: data-parallel workers are spawned processes that import this module again.
if __name__ == "__main__":
    sys.exit(main())
