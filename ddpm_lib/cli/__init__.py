"""The command lines: argparse front ends over the library, one module per console script
(``ddpm-train``, ``ddpm-sample``, ...). Exit codes: 0 success, 1 a failure while working, 2 a
usage error (bad flags, a configuration or file that cannot be used)."""
