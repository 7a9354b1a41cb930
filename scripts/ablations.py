"""DDPM Table 2 at small scale (chapter 11): the command the stored tables record.

    python scripts/ablations.py [FLAGS]      is      ddpm-ablations [FLAGS]

The code is ddpm_lib/ablations.py (the rows, the training, the scores, the table's schema) and its
command line ddpm_lib/cli/ablations.py; ``ddpm-ablations --help`` lists the flags.
"""

import sys

from ddpm_lib.cli.ablations import main

if __name__ == "__main__":
    sys.exit(main(prog="python scripts/ablations.py"))
