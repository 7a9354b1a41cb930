"""The code style is ruff's, configured in pyproject.toml ([tool.ruff]): lint clean and formatted.

Run ``ruff format`` then ``ruff check --fix`` to make a change pass. Chapters are linted but not
reformatted (their code is stored with its outputs).
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args):
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check_is_clean():
    r = _ruff("check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_leaves_nothing_to_change():
    r = _ruff("format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr
