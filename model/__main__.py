"""`python -m model`: the command line of model.cli."""

import sys

from model.cli import main

sys.exit(main())
