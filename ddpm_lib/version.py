"""The version of ddpm_lib, in one place (the package and every checkpoint it writes record it)."""

__version__ = "0.1.0"
