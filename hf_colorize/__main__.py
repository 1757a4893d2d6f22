"""`python -m hf_colorize COMMAND ...` (what `accelerate launch -m` and `torchrun -m` need)."""

import sys

from hf_colorize.cli import main

sys.exit(main())
