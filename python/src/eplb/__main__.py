"""python -m eplb: the eplb command line in Python (see eplb/cli.py)."""
import sys

from .cli import main

sys.exit(main())
