"""python -m runner: run_notebook.sh hands the run over to this (see run.py)."""

import sys

from runner.run import main

sys.exit(main())
