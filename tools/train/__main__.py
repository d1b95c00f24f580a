"""`python -m tools.train`: the training command (tools.train.cli)."""

import sys

from tools.train.cli import main

sys.exit(main())
