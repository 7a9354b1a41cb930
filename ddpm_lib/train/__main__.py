"""``python -m ddpm_lib.train`` (and ``torchrun -m ddpm_lib.train``): the ddpm-train command."""

import sys

from ddpm_lib.cli.train import main

sys.exit(main())
