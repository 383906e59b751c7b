"""``python -m reference_training`` is ``glf-train``."""

import sys

from reference_training.cli import main

sys.exit(main())
