"""Helpers shared by the benchmark scripts: sections of benchmarks/RESULTS.md, machine facts.

Imports nothing beyond the standard library, so the GPU script can use it on a bare machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"

MARKERS = {
    "cpu": ("<!-- cpu-results:begin -->", "<!-- cpu-results:end -->"),
    "gpu": ("<!-- gpu-results:begin -->", "<!-- gpu-results:end -->"),
}

HEADER = """# Benchmarks

Written by the scripts in this folder (see README.md): `bench_unet_cpu.py` rewrites the CPU section,
`bench_cifar10_gpu.py --write-results` the GPU section. The sections on what else was tried were
written by `bench_cpu_alternatives.py`, removed since (see those sections). Raw numbers:
`results_cpu.json`, `results_gpu.json`, `results_cpu_alternatives*.json`.
"""


def update_section(name: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace section ``name`` (a key of MARKERS, or any other name: markers made from it) of the
    results file between its markers, leaving
    everything else (other sections, hand-written notes) as it is; a missing section is added
    (the CPU one before the GPU one)."""
    text = path.read_text() if path.exists() else HEADER
    begin, end = MARKERS.get(name) or (f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
    section = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    elif name == "cpu" and MARKERS["gpu"][0] in text:
        i = text.index(MARKERS["gpu"][0])
        text = text[:i] + section + "\n\n" + text[i:]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
