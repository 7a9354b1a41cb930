"""Settings for ``pytest --nbval chapters/``, typed as is from the repository root.

It lives at the root, not in chapters/ (where every .py is a chapter), and pytest loads it for any run
under the root; it acts only when ``--nbval`` is given.

The replay then runs as ``python -m ddpm_lib.course.book execute`` ran the chapters when it stored their
outputs: the kernel of this Python (``--nbval-current-env``), progress-bar times and rates sanitized
(``nbval_sanitize.cfg``, unless ``--nbval-sanitize-with`` names another file) and the CPU, with
``ddpm_lib.course.book.EXECUTION_ENV`` (no GPU, a fixed hash seed, the inline plotting backend). Flags given
on the command line win.
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    opt = config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return
    if not getattr(opt, "nbval_sanitize_with", None):
        opt.nbval_sanitize_with = str(HERE / "chapters" / "nbval_sanitize.cfg")
    if not getattr(opt, "nbval_kernel_name", None):
        opt.nbval_current_env = True
    from ddpm_lib.course.book import EXECUTION_ENV

    os.environ.update(EXECUTION_ENV)  # the kernels nbval starts inherit it
