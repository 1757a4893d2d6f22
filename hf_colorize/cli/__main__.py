"""`python -m hf_colorize.cli COMMAND ...` (the same as `python -m hf_colorize`)."""

import sys

from hf_colorize.cli import main

sys.exit(main())
