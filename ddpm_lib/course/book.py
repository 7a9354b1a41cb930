"""The course tooling: read ``book.toml``; list, sync, execute and check the chapters; build the
student edition.

Command line (``python -m ddpm_lib.course.book [--book PATH] COMMAND``)::

    list                      the chapters of book.toml: number, id, title, stem, budget, files present
    sync [ID ...]             update each chapter's .ipynb inputs from its .py (outputs and cell ids
                              kept); never the other way round. No ID: every chapter that has a .py.
                              --canonical also rewrites the .py in jupytext's canonical spacing
    execute ID ... | --all    sync, then run each .ipynb top to bottom on the CPU in a clean kernel and
                              store its outputs so that two executions give byte-identical files;
                              record the wall time in chapters/timings.json
    check [--allow-missing]   fail (exit 1) unless every chapter's .py and .ipynb exist, agree, and the
                              .ipynb holds the outputs of a clean execution of exactly these inputs;
                              --allow-missing skips chapters that have neither file yet
    times                     recorded execution times against budget_s, total_budget_s, theory_budget_s
    stats [ID ...]            per chapter: prose words, code lines, the longest code cell, cells over 40
                              lines, figures, exercises, the recorded time and an estimated reading time
                              (the rule: :data:`READING_WORDS_PER_MINUTE`)
    replay [ID ...] [--cpu NAME ...]
                              ``pytest --nbval`` on the chapters (default: all) with this machine computing
                              as itself (``native``) and as the other CPUs of :data:`SIMULATED_CPUS`; exit 1
                              unless every stored output replays under every one
    student OUTDIR            write the student edition (solutions replaced by stubs) to OUTDIR
    html [OUTDIR]             build the static website of the executed chapters in OUTDIR (default
                              _build/html): offline, math rendered, each explorer a scrubber over
                              frames drawn in advance (ddpm_lib.course.site)

``--book PATH`` (a book.toml or the folder holding one) defaults to the book.toml at the root of
the repository this package lives in. ID is a chapter's id (``start-here``), its number (``0``
or ``00``) or its stem (``00_start-here``).

Authoring workflow: edit ``chapters/NN_slug.py`` (percent format, the source), then
``python -m ddpm_lib.course.book execute NN`` (syncs the .ipynb's inputs from the .py, executes it and
stores the outputs), then ``python -m ddpm_lib.course.book replay NN`` (the stored outputs replay on this
CPU and as a different CPU would compute them) and ``python -m ddpm_lib.course.book check``.

Numbers that replay on any computer (:mod:`ddpm_lib.course.replay`): ``execute`` refuses to store, and
``check`` reports, an output that prints a residual as digits (``max |diff| 3.1e-15``), round-off
below 1e-12 or more significant digits than float32 holds; print a verdict with
``ddpm_lib.course.replay.below(value, tol)`` (``max |diff| < 1e-12``) instead.

Execution environment (``execute``): kernel ``python3`` started from the running interpreter,
working directory ``chapters/``, ``CUDA_VISIBLE_DEVICES=""`` (CPU, as CI), ``PYTHONHASHSEED=0``,
``MPLBACKEND`` = the inline backend, ``DDPM_COURSE_EXECUTING=1``, nbclient with
``record_timing=False`` and a deadline per chapter. Afterwards the notebook is normalised:
consecutive stream outputs merged and carriage returns resolved, progress-bar times and rates
replaced by a fixed text (the same patterns as ``chapters/nbval_sanitize.cfg``), widget model ids
renamed deterministically, cell execution timings and volatile notebook metadata
(``language_info.version``, ``papermill``, ...) dropped; the kernelspec is kept. A hash of the code
cells' sources is stored in the notebook metadata (``ddpm_course.executed_code_sha256``) so that
``check`` can tell outputs that belong to the current code from stale ones. The nbval replay in
tests/test_book.py runs with the same environment (:func:`kernel_env`); a chapter may read
``DDPM_COURSE_EXECUTING`` (e.g. to hide a progress bar) but should print the same either way, since a
reader's run does not set it.

Tags the tools understand:

* ``nbval-ignore-output``: nbval runs the cell but does not compare its output. Only for cells whose
  output cannot be deterministic: widgets, progress bars, ``%%time``. ``check`` reports a tagged cell
  that mentions none of these.
* ``solution``: a cell holding a reference solution. Its code between a line ``# BEGIN SOLUTION`` and
  a line ``# END SOLUTION`` is, in the student edition, replaced by
  ``raise NotImplementedError("exercise: ...")`` (the lines outside the markers, such as the ``def``
  line and the docstring, stay; text after ``BEGIN SOLUTION`` becomes the hint, else
  "implement <the enclosing function>"), the cell's outputs are cleared and its tag becomes
  ``exercise``. A cell may hold several marked blocks; a ``solution`` cell without markers, or
  markers outside a ``solution`` cell, is an error that ``check`` reports.
* ``solution-only``: a cell that the student edition drops entirely (e.g. a cell that demonstrates
  the finished solution).
* The student edition keeps the reference outputs of every code cell except the exercise cells (the
  ``solution`` cells, stubbed) and the cells that use what an exercise defines, directly or through a
  variable computed from it (followed through the notebook by the cells' ast): the check cells and
  what depends on the student's answer. Those start empty, since kept they would show the reference
  solution's result under an empty exercise. :func:`student_cleared_cells` lists them.
* ``raises-exception`` and ``skip-execution``: as nbclient and nbval define them.

Everything is importable: :func:`load_book`, :func:`list_chapters`, :func:`sync_chapter`,
:func:`execute_chapter`, :func:`check_book`, :func:`book_times`, :func:`chapter_stats`,
:func:`book_stats`, :func:`student_edition`,
:func:`normalize_notebook`, :func:`render_py`, :func:`fragile_outputs`, :func:`replay_chapter`,
:func:`replay_chapters`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .replay import fragile_numbers

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BookError",
    "BookUsageError",
    "Chapter",
    "Book",
    "CheckProblem",
    "find_book",
    "load_book",
    "list_chapters",
    "render_py",
    "sync_chapter",
    "sync_book",
    "execute_chapter",
    "execute_book",
    "normalize_notebook",
    "check_book",
    "book_times",
    "ChapterStats",
    "chapter_stats",
    "book_stats",
    "percent_cells",
    "student_edition",
    "student_notebook",
    "student_cleared_cells",
    "EXECUTION_ENV",
    "PROGRESS_PATTERNS",
    "SIMULATED_CPUS",
    "fragile_outputs",
    "replay_chapter",
    "replay_chapters",
]

BOOK_FILE = "book.toml"
TIMINGS_FILE = "timings.json"
KERNEL_NAME = "python3"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

#: Environment variables set for the kernel that executes a chapter.
EXECUTION_ENV = {
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": INLINE_BACKEND,
    "DDPM_COURSE_EXECUTING": "1",
}

#: (regex, replacement) pairs applied to stream text, text/plain and widget text after execution.
#: chapters/nbval_sanitize.cfg holds the same pairs for nbval (a test keeps the two in step).
PROGRESS_PATTERNS = [
    # tqdm's "[elapsed<remaining, rate]" (plain, or HTML-escaped in tqdm's notebook widget)
    (r"\d+:\d\d(?::\d\d)?(?:<|&lt;)(?:\d+:\d\d(?::\d\d)?|\?)(?:, *[^\]\n]*)?", "TIME"),
]

#: How this machine computes like another CPU when a chapter is replayed (``book replay --cpu NAME``):
#: ATen's SIMD dispatch, oneDNN's and MKL's instruction sets, and the thread count change the order and
#: kernels of float sums, so each gives the last bits of a float result that another computer gives.
SIMULATED_CPUS = {
    "native": {},
    # no SIMD in ATen, SSE only in oneDNN and MKL, one thread: a CPU unlike any x86 this was recorded on
    "baseline-1thread": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OMP_NUM_THREADS": "1",
    },
    # AVX2 code paths (an Intel AVX-512 machine computing as an AMD one, or the reverse) with two threads
    "avx2-2threads": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "2"},
}

IGNORE_OUTPUT_TAG = "nbval-ignore-output"
SKIP_TAGS = ("nbval-ignore-output", "nbval-skip")
# a cell tagged to skip nbval's comparison must mention one of these
NONDETERMINISTIC_RE = re.compile(r"widget|interact|tqdm|progress|%%?time", re.IGNORECASE)
SOLUTION_TAG = "solution"
SOLUTION_ONLY_TAG = "solution-only"
EXERCISE_TAG = "exercise"  # what a `solution` cell is tagged in the student edition
BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b[ \t:\-]*(?P<hint>.*?)\s*$")
END_RE = re.compile(r"^[ \t]*#\s*END SOLUTION\b.*$")
DEF_RE = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(?P<name>\w+)\s*\(")
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
META_KEY = "ddpm_course"
HASH_KEY = "executed_code_sha256"
# notebook metadata that changes from run to run or machine to machine, not with the chapter
VOLATILE_NOTEBOOK_METADATA = (
    "papermill",
    "execution",
    "widgets_version",
    "vscode",
    "colab",
    "toc-autonumbering",
)

# When no jupytext.toml is found, the pairing the repository uses.
DEFAULT_JUPYTEXT_CONFIG = {
    "formats": "ipynb,py:percent",
    "notebook_metadata_filter": "kernelspec,-jupytext",
    "cell_metadata_filter": "tags,-all",
}


class BookError(Exception):
    """A problem with book.toml, a chapter's files, or a command's arguments."""


class BookUsageError(BookError):
    """A command that cannot work as given: no such chapter, no book.toml there, no chapter named
    (``ddpm-book`` exits 2, as for every usage error; another BookError exits 1)."""


# ---------------------------------------------------------------------------------------------
# book.toml
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chapter:
    """One chapter of book.toml. Paths are absolute; ``py_exists``/``ipynb_exists`` look now."""

    id: str
    number: int
    title: str
    stem: str
    budget_s: float
    track: str = ""
    notes: tuple = ()
    chapters_dir: Path = Path("chapters")

    @property
    def label(self) -> str:
        return f"{self.number:02d} {self.id}"

    @property
    def py_path(self) -> Path:
        return self.chapters_dir / f"{self.stem}.py"

    @property
    def ipynb_path(self) -> Path:
        return self.chapters_dir / f"{self.stem}.ipynb"

    @property
    def py_exists(self) -> bool:
        return self.py_path.is_file()

    @property
    def ipynb_exists(self) -> bool:
        return self.ipynb_path.is_file()


@dataclass
class Book:
    """book.toml, read: the chapters in order and the budgets."""

    path: Path
    title: str
    chapters_dir: Path
    total_budget_s: Optional[float]
    theory_budget_s: Optional[float]
    chapters: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def timings_path(self) -> Path:
        return self.chapters_dir / TIMINGS_FILE

    def chapter(self, key) -> Chapter:
        """A chapter by id, number (``0``, ``"00"``) or stem."""
        k = str(key).strip()
        for c in self.chapters:
            if k in (c.id, c.stem) or (k.isdigit() and int(k) == c.number):
                return c
        known = ", ".join(f"{c.number:02d}/{c.id}" for c in self.chapters)
        raise BookUsageError(f"no chapter {key!r} in {self.path} (chapters: {known})")

    def select(self, keys: Optional[Iterable] = None) -> list:
        """The chapters named by ``keys`` in book order (all when None or empty)."""
        if not keys:
            return list(self.chapters)
        wanted = {self.chapter(k).id for k in keys}
        return [c for c in self.chapters if c.id in wanted]


def find_book(path=None) -> Path:
    """The book.toml to use: ``path`` (a file or the folder holding one), else the repository's."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / BOOK_FILE
        if not p.is_file():
            raise BookUsageError(f"no book.toml at {p}")
        return p.resolve()
    here = Path(__file__).resolve().parents[2] / BOOK_FILE
    if here.is_file():
        return here
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / BOOK_FILE).is_file():
            return (d / BOOK_FILE).resolve()
    raise BookUsageError(
        "no book.toml found next to the ddpm_lib package or above the current directory; pass --book PATH"
    )


def load_book(path=None) -> Book:
    """Read and validate book.toml (``path``: the file or its folder; default: the repository's)."""
    p = find_book(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BookError(f"{p}: not valid TOML: {e}") from None
    meta = raw.get("book", {})
    chapters_dir = (p.parent / meta.get("chapters_dir", "chapters")).resolve()
    chapters = []
    for i, c in enumerate(raw.get("chapter", [])):
        missing = [k for k in ("id", "number", "title", "stem", "budget_s") if k not in c]
        if missing:
            raise BookError(f"{p}: chapter #{i + 1} ({c.get('id', '?')}) lacks {', '.join(missing)}")
        if not isinstance(c["budget_s"], (int, float)) or c["budget_s"] <= 0:
            raise BookError(
                f"{p}: chapter {c['id']}: budget_s must be a positive number, got {c['budget_s']!r}"
            )
        chapters.append(
            Chapter(
                id=str(c["id"]),
                number=int(c["number"]),
                title=str(c["title"]),
                stem=str(c["stem"]),
                budget_s=float(c["budget_s"]),
                track=str(c.get("track", "")),
                notes=tuple(c.get("notes", ())),
                chapters_dir=chapters_dir,
            )
        )
    for attr in ("id", "number", "stem"):
        seen = [getattr(c, attr) for c in chapters]
        dup = sorted({str(v) for v in seen if seen.count(v) > 1})
        if dup:
            raise BookError(f"{p}: chapter {attr}s must be unique; repeated: {', '.join(dup)}")
    chapters.sort(key=lambda c: c.number)
    return Book(
        path=p,
        title=str(meta.get("title", "")),
        chapters_dir=chapters_dir,
        total_budget_s=meta.get("total_budget_s"),
        theory_budget_s=meta.get("theory_budget_s"),
        chapters=chapters,
        raw=raw,
    )


def list_chapters(path=None) -> list:
    """The chapters of book.toml in order, as :class:`Chapter` objects."""
    return list(load_book(path).chapters)


# ---------------------------------------------------------------------------------------------
# jupytext: reading, rendering, syncing
# ---------------------------------------------------------------------------------------------
def _jupytext_config(file: Path):
    """The jupytext configuration the jupytext CLI would use for ``file`` (or the repository's)."""
    from jupytext.config import JupytextConfiguration, load_jupytext_config

    cfg = load_jupytext_config(str(Path(file).resolve()))
    if cfg is None:
        cfg = JupytextConfiguration(**DEFAULT_JUPYTEXT_CONFIG)
    return cfg


def read_ipynb(path: Path):
    """A notebook file as an nbformat v4 node."""
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _ipynb_text(nb) -> str:
    import jupytext

    text = jupytext.writes(nb, fmt="ipynb")
    return text if text.endswith("\n") else text + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def render_py(nb, config_for: Path) -> str:
    """The notebook as the jupytext CLI renders it in py:percent (``jupytext --to py:percent -o -``)."""
    import jupytext

    text = jupytext.writes(nb, fmt="py:percent", config=_jupytext_config(config_for))
    return text if text.endswith("\n") else text + "\n"


def _read_py(chapter: Chapter):
    import jupytext

    text = chapter.py_path.read_text(encoding="utf-8")
    return jupytext.reads(text, fmt="py:percent", config=_jupytext_config(chapter.py_path))


def sync_chapter(chapter: Chapter, *, quiet: bool = False) -> bool:
    """Update ``chapter``'s .ipynb inputs from its .py, keeping outputs and cell ids.

    Equivalent to ``jupytext --to ipynb --update X.py``. Creates the .ipynb when missing. Returns True
    when the .ipynb changed. Outputs of cells whose code changed are kept (as jupytext does) but the
    notebook is then stale: :func:`check_book` says so until the chapter is executed again.
    """
    from jupytext.combine import combine_inputs_with_outputs

    if not chapter.py_exists:
        raise BookError(f"chapter {chapter.label}: {chapter.py_path} does not exist")
    nb = _read_py(chapter)
    if chapter.ipynb_exists:
        nb = combine_inputs_with_outputs(nb, read_ipynb(chapter.ipynb_path), fmt="py:percent")
    changed = _write_if_changed(chapter.ipynb_path, _ipynb_text(nb))
    if not quiet:
        print(
            f"{chapter.label}: {chapter.ipynb_path.name} {'updated from' if changed else 'already in sync with'} "
            f"{chapter.py_path.name}"
        )
        py_text = chapter.py_path.read_text(encoding="utf-8")
        rendered = render_py(read_ipynb(chapter.ipynb_path), chapter.py_path)
        if rendered != py_text:
            print(
                f"{chapter.label}: warning: {chapter.py_path.name} is not in jupytext's canonical form, so "
                "`check` will fail; rewrite it with `sync --canonical`:\n"
                + _short_diff(py_text, rendered, chapter.py_path.name)
            )
    return changed


def canonicalize_py(chapter: Chapter) -> bool:
    """Rewrite the .py as jupytext renders its (just synced) .ipynb: same cells, canonical spacing."""
    sync_chapter(chapter, quiet=True)
    rendered = render_py(read_ipynb(chapter.ipynb_path), chapter.py_path)
    return _write_if_changed(chapter.py_path, rendered)


def sync_book(book: Book, keys=None, *, canonical: bool = False, quiet: bool = False) -> list:
    """Sync the named chapters (default: every chapter that has a .py). Returns those changed."""
    chapters = book.select(keys)
    if not keys:
        chapters = [c for c in chapters if c.py_exists]
    changed = []
    for c in chapters:
        if canonical and canonicalize_py(c) and not quiet:
            print(f"{c.label}: rewrote {c.py_path.name} in canonical form")
        if sync_chapter(c, quiet=quiet):
            changed.append(c)
    return changed


def _short_diff(a: str, b: str, name: str, n: int = 30) -> str:
    lines = list(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), f"{name}", f"{name} (rendered from .ipynb)", lineterm="", n=1
        )
    )
    more = f"\n    ... ({len(lines) - n} more diff lines)" if len(lines) > n else ""
    return "\n".join("    " + line for line in lines[:n]) + more


# ---------------------------------------------------------------------------------------------
# normalisation after execution
# ---------------------------------------------------------------------------------------------
_CR_RE = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)
_BS_RE = re.compile("[^\n]\x08")


def scrub_progress(text: str) -> str:
    """Replace progress-bar times and rates (tqdm's ``[00:03<00:01, 9.2it/s]``) by a fixed text."""
    for pat, rep in PROGRESS_PATTERNS:
        text = re.sub(pat, rep, text)
    return text


def _resolve_control_chars(text: str) -> str:
    # as nbval does: backspaces cancel the previous character, a \r not followed by \n erases its line
    old = None
    while old != text:
        old, text = text, _BS_RE.sub("", text)
    return _CR_RE.sub("", text)


def _join(src) -> str:
    return "".join(src) if isinstance(src, list) else (src or "")


def _normalize_outputs(outputs: list) -> list:
    import nbformat

    out = []
    for o in outputs:
        if (
            o.get("output_type") == "stream"
            and out
            and out[-1].get("output_type") == "stream"
            and out[-1].get("name") == o.get("name")
        ):
            out[-1]["text"] = _join(out[-1]["text"]) + _join(o.get("text"))
            continue
        out.append(copy.deepcopy(o))
    for o in out:
        if o.get("output_type") == "stream":
            o["text"] = scrub_progress(_resolve_control_chars(_join(o.get("text"))))
        elif "data" in o and "text/plain" in o["data"]:
            o["data"]["text/plain"] = scrub_progress(_join(o["data"]["text/plain"]))
        o.pop("transient", None)
    return [nbformat.from_dict(o) for o in out]


def _walk_strings(obj, fn):
    """Apply ``fn`` to every string in a JSON-like structure (dict keys untouched), in place-ish."""
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _walk_strings(obj[k], fn)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _walk_strings(v, fn)
        return obj
    if isinstance(obj, str):
        return fn(obj)
    return obj


def _widget_ids_in(obj, state: dict, order: list, seen: set) -> None:
    """Collect the widget model ids referenced in ``obj`` (``model_id`` of view outputs and
    ``IPY_MODEL_`` references) in a deterministic order, following each into its own state."""

    def visit(o):
        if isinstance(o, dict):
            for k in sorted(o):
                if k == "model_id" and isinstance(o[k], str):
                    add(o[k])
                else:
                    visit(o[k])
        elif isinstance(o, list):
            for v in o:
                visit(v)
        elif isinstance(o, str) and o.startswith("IPY_MODEL_"):
            add(o[len("IPY_MODEL_") :])

    def add(mid):
        if mid in seen:
            return
        seen.add(mid)
        order.append(mid)
        if mid in state:
            visit(state[mid].get("state", {}))

    visit(obj)


def _new_widget_id(i: int) -> str:
    return hashlib.md5(f"ddpm-course-widget-{i}".encode()).hexdigest()


def _normalize_widgets(nb) -> None:
    widgets = nb.metadata.get("widgets", {})
    container = widgets.get(WIDGET_STATE_MIME) if isinstance(widgets, dict) else None
    state = dict(container.get("state", {})) if isinstance(container, dict) else {}
    order, seen = [], set()
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            _widget_ids_in(o, state, order, seen)
    for mid in list(state):  # models no output refers to (e.g. closed ones), in creation order
        _widget_ids_in({"model_id": mid}, state, order, seen)
    if not order:
        return
    mapping = {old: _new_widget_id(i) for i, old in enumerate(order)}

    def rename(s: str) -> str:
        if s in mapping:
            return mapping[s]
        if s.startswith("IPY_MODEL_") and s[len("IPY_MODEL_") :] in mapping:
            return "IPY_MODEL_" + mapping[s[len("IPY_MODEL_") :]]
        return s

    for cell in nb.cells:
        if cell.get("outputs"):
            _walk_strings(cell["outputs"], rename)
    if state:
        new_state = {}
        for old in order:
            if old in state:
                entry = _walk_strings(copy.deepcopy(state[old]), lambda s: scrub_progress(rename(s)))
                new_state[mapping[old]] = entry
        container["state"] = new_state


def code_hash(nb) -> str:
    """The sha256 of a notebook's code cells' sources: what ``check`` compares with the hash stored at
    execution, and what keys the static edition's frame cache."""
    sources = [_join(c.source) for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode("utf-8")).hexdigest()


def normalize_notebook(nb, *, record_hash: bool = True):
    """Make an executed notebook deterministic (in place; also returned). See the module docstring."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _normalize_outputs(cell.get("outputs", []))
    md = nb.metadata
    for key in VOLATILE_NOTEBOOK_METADATA:
        md.pop(key, None)
    if isinstance(md.get("language_info"), dict):
        md["language_info"].pop("version", None)
    _normalize_widgets(nb)
    if record_hash:
        md.setdefault(META_KEY, {})[HASH_KEY] = code_hash(nb)
    return nb


def fragile_outputs(nb) -> list:
    """Every printed number of ``nb``'s compared cells that another CPU may print differently.

    Returns strings ``"cell N: <line>: <advice>"`` (N counts all cells from 1, as ``check`` does). Cells
    tagged ``nbval-ignore-output`` are skipped: nbval does not compare them. See :mod:`ddpm_lib.course.replay`.
    """
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or any(t in cell.metadata.get("tags", []) for t in SKIP_TAGS):
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                text = _join(o.get("text"))
            elif "text/plain" in o.get("data", {}):
                text = _join(o["data"]["text/plain"])
            else:
                continue
            found.extend(f"cell {i + 1}: {f}" for f in fragile_numbers(text))
    return found


# ---------------------------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------------------------
def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}"
    )


def kernel_env(extra: Optional[dict] = None) -> dict:
    """The environment a chapter's kernel runs in (the current one plus :data:`EXECUTION_ENV`)."""
    env = dict(os.environ)
    env.update(EXECUTION_ENV)
    pkg_parent = str(Path(__file__).resolve().parents[2])  # this ddpm_lib, even when not installed
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    if extra:
        env.update(extra)
    return env


def default_timeout(chapter: Chapter) -> float:
    """Seconds a chapter may run before ``execute`` gives up: 5x its budget, at least 120 s."""
    return max(120.0, 5.0 * chapter.budget_s)


def execute_chapter(
    chapter: Chapter,
    *,
    timeout: Optional[float] = None,
    sync: bool = True,
    record: bool = True,
    quiet: bool = False,
) -> float:
    """Execute ``chapter``'s .ipynb in a clean kernel, store its outputs in place, normalised.

    ``sync``: first update the .ipynb's inputs from the .py. ``timeout``: seconds for the whole
    chapter (default :func:`default_timeout`). ``record``: write the wall time to timings.json.
    Returns the wall time in seconds. On a cell error, a time-out, or an output that prints a number
    another CPU would print differently (:func:`fragile_outputs`) raises :class:`BookError`; the .ipynb
    then keeps its previous outputs (its inputs were synced first).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if sync:
        sync_chapter(chapter, quiet=True)
    if not chapter.ipynb_exists:
        raise BookError(
            f"chapter {chapter.label}: {chapter.ipynb_path} does not exist (and no .py to make it from)"
        )
    nb = read_ipynb(chapter.ipynb_path)
    limit = float(timeout) if timeout else default_timeout(chapter)
    start = time.monotonic()
    deadline = start + limit

    def remaining(_cell):
        return max(1, int(deadline - time.monotonic()) + 1)

    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=int(limit) + 1,
        timeout_func=remaining,
        record_timing=False,
        allow_errors=False,
        store_widget_state=True,
        coalesce_streams=True,
        resources={"metadata": {"path": str(chapter.chapters_dir)}},
    )
    if not quiet:
        print(
            f"{chapter.label}: executing {chapter.ipynb_path.name} (budget {chapter.budget_s:g} s, "
            f"limit {limit:g} s) ...",
            flush=True,
        )
    try:
        client.execute(env=kernel_env())
    except CellTimeoutError as e:
        raise BookError(
            f"chapter {chapter.label}: execution exceeded {limit:g} s (budget {chapter.budget_s:g} s); "
            f"nothing was written\n{e}"
        ) from None
    except (CellExecutionError, DeadKernelError) as e:
        raise BookError(f"chapter {chapter.label}: execution failed; nothing was written\n{e}") from None
    seconds = time.monotonic() - start
    normalize_notebook(nb)
    fragile = fragile_outputs(nb)
    if fragile:
        raise BookError(
            f"chapter {chapter.label}: {len(fragile)} printed number(s) would not replay on another CPU; "
            "nothing was written (see ddpm_lib.course.replay for the rules):\n  " + "\n  ".join(fragile)
        )
    _write_if_changed(chapter.ipynb_path, _ipynb_text(nb))
    if record:
        _record_timing(chapter, seconds)
    if not quiet:
        over = "  OVER BUDGET" if seconds > chapter.budget_s else ""
        print(
            f"{chapter.label}: executed in {seconds:.1f} s (budget {chapter.budget_s:g} s){over}", flush=True
        )
    return seconds


def _record_timing(chapter: Chapter, seconds: float) -> None:
    path = chapter.chapters_dir / TIMINGS_FILE
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
    data[chapter.id] = {
        "seconds": round(seconds, 1),
        "machine": _machine(),
        "date": _dt.date.today().isoformat(),
        "load": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    _write_if_changed(path, json.dumps(dict(sorted(data.items())), indent=2, ensure_ascii=False) + "\n")


def execute_book(
    book: Book, keys=None, *, all_chapters: bool = False, timeout: Optional[float] = None, quiet: bool = False
) -> dict:
    """Execute the named chapters (or, with ``all_chapters``, every chapter that has files)."""
    if not keys and not all_chapters:
        raise BookUsageError("name the chapters to execute, or pass --all")
    chapters = book.select(None if all_chapters else keys)
    times, skipped = {}, []
    for c in chapters:
        if all_chapters and not (c.py_exists or c.ipynb_exists):
            skipped.append(f"{c.number:02d}")
            continue
        times[c.id] = execute_chapter(c, timeout=timeout, quiet=quiet)
    if skipped and not quiet:
        print(f"skipped {len(skipped)} chapter(s) without files: {', '.join(skipped)}")
    return times


# ---------------------------------------------------------------------------------------------
# replay: pytest --nbval, on this CPU and as others compute
# ---------------------------------------------------------------------------------------------
def replay_chapter(chapter: Chapter, cpu: str = "native", *, timeout: Optional[float] = None):
    """``pytest --nbval`` on ``chapter``'s .ipynb in a subprocess, with this machine computing as ``cpu``.

    ``cpu`` names an entry of :data:`SIMULATED_CPUS`; the kernel runs in :func:`kernel_env` plus that
    entry's variables. Returns the ``subprocess.CompletedProcess`` (``returncode`` 0: every compared
    cell printed what is stored). ``timeout``: seconds for the whole replay (default: the execution
    limit, :func:`default_timeout`, plus two minutes for pytest and the kernel to start).
    """
    import subprocess

    if cpu not in SIMULATED_CPUS:
        raise BookUsageError(f"unknown cpu {cpu!r}: choose from {', '.join(SIMULATED_CPUS)}")
    if not chapter.ipynb_exists:
        raise BookError(f"chapter {chapter.label}: {chapter.ipynb_path} does not exist")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(chapter.chapters_dir / "nbval_sanitize.cfg"),
        f"--nbval-cell-timeout={int(default_timeout(chapter))}",
        str(chapter.ipynb_path),
    ]
    limit = timeout if timeout else default_timeout(chapter) + 120
    try:
        return subprocess.run(
            cmd,
            cwd=chapter.chapters_dir.parent,
            env=kernel_env(SIMULATED_CPUS[cpu]),
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        raise BookError(f"chapter {chapter.label}: the replay as {cpu} exceeded {limit:g} s") from None


def replay_chapters(
    book: Book, keys=None, cpus: Sequence[str] = tuple(SIMULATED_CPUS), *, quiet: bool = False
) -> list:
    """Replay the named chapters (default: all that have an .ipynb) under each CPU of ``cpus``.

    Returns the failures as ``(cpu, chapter label, pytest's output)``; empty when everything replays.
    """
    chapters = [c for c in book.select(keys) if c.ipynb_exists]
    failures = []
    for cpu in cpus:
        start = time.monotonic()
        for c in chapters:
            t0 = time.monotonic()
            r = replay_chapter(c, cpu)
            if r.returncode != 0:
                failures.append((cpu, c.label, r.stdout[-6000:] + r.stderr[-2000:]))
            if not quiet:
                verdict = "ok" if r.returncode == 0 else "FAILED"
                print(f"{cpu:<17} {c.label:<38} {verdict:<7} {time.monotonic() - t0:6.1f} s", flush=True)
        if not quiet:
            print(
                f"{cpu}: {len(chapters)} chapter(s) in {time.monotonic() - start:.0f} s "
                f"({'|'.join(f'{k}={v}' for k, v in SIMULATED_CPUS[cpu].items()) or 'as this machine is'})",
                flush=True,
            )
    return failures


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------
@dataclass
class CheckProblem:
    chapter: str
    message: str

    def __str__(self) -> str:
        return f"{self.chapter}: {self.message}"


def _solution_problems(cell, index: int) -> list:
    tags = cell.metadata.get("tags", [])
    lines = _join(cell.source).splitlines()
    begins = [i for i, line in enumerate(lines) if BEGIN_RE.match(line)]
    ends = [i for i, line in enumerate(lines) if END_RE.match(line)]
    where = f"cell {index + 1}"
    if SOLUTION_TAG in tags:
        if not begins:
            return [
                f"{where} is tagged `solution` but has no `# BEGIN SOLUTION` / `# END SOLUTION` lines "
                "(tag it `solution-only` to drop the whole cell from the student edition)"
            ]
        try:
            _stub_source(_join(cell.source))
        except BookError as e:
            return [f"{where}: {e}"]
    elif begins or ends:
        return [f"{where} has `# BEGIN SOLUTION` / `# END SOLUTION` lines but is not tagged `solution`"]
    return []


def _check_chapter(c: Chapter) -> list:
    probs = []
    if not c.py_path.is_file():
        probs.append(f"{c.py_path.name} is missing")
    if not c.ipynb_path.is_file():
        probs.append(f"{c.ipynb_path.name} is missing (run `python -m ddpm_lib.course.book execute {c.id}`)")
    if probs:
        return probs
    from jupytext.formats import guess_format

    py_text = c.py_path.read_text(encoding="utf-8")
    fmt, _ = guess_format(py_text, ".py")
    if fmt != "percent":
        probs.append(
            f"{c.py_path.name} is not in the percent format (jupytext sees {fmt!r}); cells start with `# %%`"
        )
    try:
        nb = read_ipynb(c.ipynb_path)
    except Exception as e:  # noqa: BLE001 - report any unreadable notebook
        return probs + [f"{c.ipynb_path.name} cannot be read: {e}"]
    if not nb.metadata.get("kernelspec", {}).get("name"):
        probs.append(
            f"{c.ipynb_path.name} has no kernelspec (JupyterLab and nbval need one; keep "
            "`kernelspec` in the .py header)"
        )
    rendered = render_py(nb, c.py_path)
    if rendered != py_text:
        probs.append(
            f"{c.py_path.name} and {c.ipynb_path.name} differ (edit the .py, then run "
            f"`python -m ddpm_lib.course.book execute {c.id}`; if only spacing differs, `sync --canonical {c.id}`):\n"
            + _short_diff(py_text, rendered, c.py_path.name)
        )
    expected = 1
    unexecuted, out_of_order, errors, bad_tags = [], [], [], []
    for i, cell in enumerate(nb.cells):
        probs.extend(f"{p}" for p in _solution_problems(cell, i))
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        src = _join(cell.source)
        for tag in SKIP_TAGS:
            if tag in tags and not NONDETERMINISTIC_RE.search(src):
                bad_tags.append(
                    f"cell {i + 1} ({tag}: {src.strip().splitlines()[0][:60] if src.strip() else ''!r})"
                )
        if not src.strip() or "skip-execution" in tags:
            continue
        if cell.get("execution_count") is None:
            unexecuted.append(i + 1)
            continue
        if cell.execution_count != expected:
            out_of_order.append(f"cell {i + 1} has [{cell.execution_count}], expected [{expected}]")
        expected = cell.execution_count + 1
        if "raises-exception" not in tags and any(
            o.get("output_type") == "error" for o in cell.get("outputs", [])
        ):
            errors.append(i + 1)
    if unexecuted:
        probs.append(
            f"code cells {unexecuted} of {c.ipynb_path.name} have not been executed "
            f"(run `python -m ddpm_lib.course.book execute {c.id}`)"
        )
    if out_of_order:
        probs.append(
            f"{c.ipynb_path.name} does not hold one clean top-to-bottom run: "
            + "; ".join(out_of_order[:3])
            + (" ..." if len(out_of_order) > 3 else "")
        )
    if errors:
        probs.append(
            f"code cells {errors} of {c.ipynb_path.name} stored an error (tag `raises-exception` if intended)"
        )
    recorded = nb.metadata.get(META_KEY, {}).get(HASH_KEY)
    if recorded is None:
        if not unexecuted:
            probs.append(
                f"{c.ipynb_path.name} was not executed by `python -m ddpm_lib.course.book execute {c.id}` "
                "(its outputs are not normalised)"
            )
    elif recorded != code_hash(nb):
        probs.append(
            f"the code of {c.ipynb_path.name} changed since it was executed: its outputs are stale "
            f"(run `python -m ddpm_lib.course.book execute {c.id}`)"
        )
    if bad_tags:
        probs.append(
            "only widget, progress-bar and %%time cells may skip nbval's comparison; check "
            + ", ".join(bad_tags)
        )
    fragile = fragile_outputs(nb)
    if fragile:
        probs.append(
            f"{len(fragile)} printed number(s) of {c.ipynb_path.name} would not replay on another CPU "
            "(see ddpm_lib.course.replay):\n  " + "\n  ".join(fragile)
        )
    return probs


def check_book(book: Book, keys=None, *, allow_missing: bool = False) -> list:
    """Every problem found with the chapters, as :class:`CheckProblem` (empty: all is well).

    Per chapter: both files exist (with ``allow_missing``, a chapter that has neither is skipped);
    the .py is percent format and equals the .ipynb rendered as py:percent; the .ipynb has a
    kernelspec; every non-empty code cell was executed, in one run numbered 1, 2, 3, ... with no
    stored error; the outputs were made from these very code cells (hash); the solution markers
    follow the convention; only widget/progress/%%time cells skip nbval's comparison.
    """
    problems = []
    for c in book.select(keys):
        if allow_missing and not c.py_exists and not c.ipynb_exists:
            continue
        problems.extend(CheckProblem(f"chapter {c.label} ({c.stem})", m) for m in _check_chapter(c))
    return problems


# ---------------------------------------------------------------------------------------------
# times
# ---------------------------------------------------------------------------------------------
def read_timings(book: Book) -> dict:
    """chapters/timings.json: chapter id -> {"seconds", "machine", "date"} (empty when absent)."""
    if not book.timings_path.is_file():
        return {}
    return json.loads(book.timings_path.read_text(encoding="utf-8"))


CONTENDED_LOAD = 1.5  # a timing taken while the 1-minute load average exceeded this many x the CPUs


def contended(record: dict) -> bool:
    """True when a timings.json record was taken on a busy machine (other jobs shared its CPUs), so it
    does not measure the chapter against its budget."""
    if record.get("contended"):  # marked by hand: the load was seen from outside the run
        return True
    load, cpus = record.get("load"), record.get("cpus")
    return load is not None and bool(cpus) and load > CONTENDED_LOAD * cpus


def book_times(book: Book, *, out=None) -> tuple:
    """Print recorded times against the budgets. Returns (ok, report lines). A time recorded on a busy
    machine (:func:`contended`) is printed but not held against the budget: measure it again."""
    timings = read_timings(book)
    lines, ok = [], True
    lines.append(f"{'chapter':<42} {'time':>8} {'budget':>8}")
    total = theory = 0.0
    measured = 0
    for c in book.chapters:
        t = timings.get(c.id, {}).get("seconds")
        if t is None:
            lines.append(f"{c.label:<42} {'-':>8} {c.budget_s:>7g}s  not measured")
            continue
        if contended(timings[c.id]):
            r = timings[c.id]
            why = (
                f"under load {r['load']:g} on {r['cpus']} CPUs"
                if r.get("load") is not None
                else f"on a busy machine ({r['contended']})"
            )
            lines.append(
                f"{c.label:<42} {t:>7.1f}s {c.budget_s:>7g}s  not a measurement: taken {why}; "
                f"execute it again on an idle machine"
            )
            continue
        measured += 1
        total += t
        if c.track == "theory":
            theory += t
        flag = "  OVER" if t > c.budget_s else ""
        ok &= t <= c.budget_s
        lines.append(f"{c.label:<42} {t:>7.1f}s {c.budget_s:>7g}s{flag}")
    n = len(book.chapters)
    for name, value, budget in (
        ("theory chapters", theory, book.theory_budget_s),
        ("all chapters", total, book.total_budget_s),
    ):
        if budget is None:
            continue
        flag = "  OVER" if value > budget else ""
        ok &= value <= budget
        lines.append(f"{name + ' (measured ones)':<42} {value:>7.1f}s {budget:>7g}s{flag}")
    lines.append(f"{measured} of {n} chapters measured" + ("" if ok else "; over budget"))
    print("\n".join(lines), file=out or sys.stdout)
    return ok, lines


# ---------------------------------------------------------------------------------------------
# stats: how long a chapter is to read
# ---------------------------------------------------------------------------------------------
#: The reading-time rule (the course's own estimate, not a measurement): prose at 150 words a minute, a
#: common figure for careful reading of technical text (ordinary prose is read faster, 200-300 a minute);
#: one minute per code cell (read it, run it, compare its output); one minute per stored figure; ten
#: minutes per exercise (a `solution` cell). The per-cell, per-figure and per-exercise minutes are
#: guesses a reader's own pace may halve or double.
READING_WORDS_PER_MINUTE = 150
MINUTES_PER_CODE_CELL = 1.0
MINUTES_PER_FIGURE = 1.0
MINUTES_PER_EXERCISE = 10.0
LONG_CELL_LINES = 40  # a code cell longer than this is over the course's limit
_WORD_RE = re.compile(r"\S*[^\W_]\S*")  # a whitespace-separated token holding a letter or a digit


@dataclass(frozen=True)
class ChapterStats:
    """What :func:`chapter_stats` measures of one chapter (cell numbers count all cells from 1, as
    ``check`` does).

    ``words``: prose words (tokens holding a letter or digit in markdown cells, inline math counting
    as the tokens it has); ``code_lines``: non-blank lines of code cells; ``longest_cell``: (lines,
    cell number) of the longest code cell, its lines counted from its first to its last non-blank
    line; ``long_cells``: cell numbers of code cells over :data:`LONG_CELL_LINES` lines; ``figures``:
    stored image outputs (PNG, JPEG, SVG) in the .ipynb; ``exercises``: cells tagged ``solution``;
    ``seconds``: the execution time recorded in timings.json (None when not measured) and ``contended``
    whether it was taken on a busy machine."""

    chapter: Chapter
    words: int
    code_cells: int
    code_lines: int
    longest_cell: tuple
    long_cells: tuple
    figures: int
    exercises: int
    seconds: Optional[float] = None
    contended: bool = False

    @property
    def reading_minutes(self) -> float:
        """The estimated reading time in minutes, by the rule of :data:`READING_WORDS_PER_MINUTE`."""
        return (
            self.words / READING_WORDS_PER_MINUTE
            + MINUTES_PER_CODE_CELL * self.code_cells
            + MINUTES_PER_FIGURE * self.figures
            + MINUTES_PER_EXERCISE * self.exercises
        )


def _cell_lines(src: str) -> int:
    lines = src.strip("\n").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return len(lines)


_PERCENT_RE = re.compile(r"^# %%(?P<md> \[markdown\])?(?:.*?\btags=(?P<tags>\[[^\]]*\]))?.*$")


def percent_cells(text: str) -> list:
    """The cells of a py:percent file as ``(cell_type, source, tags)``, for counting (markdown sources keep
    their ``# `` prefixes; the YAML header is not a cell). A light reader, so that ``stats`` does not
    import jupytext; tests/test_book.py checks that it finds jupytext's cells in every chapter."""
    cells, kind, tags, lines = [], None, [], []
    for line in text.splitlines():
        m = _PERCENT_RE.match(line)
        if m:
            if kind is not None:
                cells.append((kind, "\n".join(lines).strip("\n"), tags))
            kind, lines = ("markdown" if m.group("md") else "code"), []
            tags = json.loads(m.group("tags")) if m.group("tags") else []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        cells.append((kind, "\n".join(lines).strip("\n"), tags))
    return cells


def chapter_stats(chapter: Chapter, timings: Optional[dict] = None) -> ChapterStats:
    """Measure ``chapter``: prose words, code lines, the longest code cell, figures, exercises and the
    recorded execution time (see :class:`ChapterStats`). ``timings``: the contents of timings.json
    (default: read from the chapters folder). The cells are read from the .py (the source)
    when it exists, else from the .ipynb; figures are counted in the .ipynb's stored outputs."""
    if chapter.py_exists:
        cells = percent_cells(chapter.py_path.read_text(encoding="utf-8"))
    elif chapter.ipynb_exists:
        nb = json.loads(chapter.ipynb_path.read_text(encoding="utf-8"))
        cells = [
            (c.get("cell_type"), _join(c.get("source")), c.get("metadata", {}).get("tags", []))
            for c in nb.get("cells", [])
        ]
    else:
        raise BookError(
            f"chapter {chapter.label}: neither {chapter.py_path.name} nor {chapter.ipynb_path.name} exists"
        )
    words = code_cells = code_lines = exercises = 0
    longest, long_cells = (0, 0), []
    for i, (kind, src, tags) in enumerate(cells):
        if kind == "markdown":
            words += len(_WORD_RE.findall(src))
        elif kind == "code" and src.strip():
            n = _cell_lines(src)
            code_cells += 1
            code_lines += sum(1 for line in src.splitlines() if line.strip())
            if n > longest[0]:
                longest = (n, i + 1)
            if n > LONG_CELL_LINES:
                long_cells.append(i + 1)
            exercises += SOLUTION_TAG in tags
    figures = 0
    if chapter.ipynb_exists:  # plain JSON: nbformat's validation of a notebook full of images is slow
        for cell in json.loads(chapter.ipynb_path.read_text(encoding="utf-8")).get("cells", []):
            for o in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
                data = o.get("data", {})
                figures += any(m in data for m in ("image/png", "image/jpeg", "image/svg+xml"))
    if timings is None:
        path = chapter.chapters_dir / TIMINGS_FILE
        timings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    rec = timings.get(chapter.id, {})
    return ChapterStats(
        chapter=chapter,
        words=words,
        code_cells=code_cells,
        code_lines=code_lines,
        longest_cell=longest,
        long_cells=tuple(long_cells),
        figures=figures,
        exercises=exercises,
        seconds=rec.get("seconds"),
        contended=bool(rec) and contended(rec),
    )


def book_stats(book: Book, keys=None, *, out=None) -> list:
    """Print a table of :func:`chapter_stats` for the named chapters (default: every chapter with a file)
    and the totals; returns the :class:`ChapterStats` list."""
    timings = read_timings(book)
    chapters = [c for c in book.select(keys) if keys or c.py_exists or c.ipynb_exists]
    stats = [chapter_stats(c, timings) for c in chapters]
    head = (
        f"{'chapter':<36} {'words':>6} {'code':>5} {'longest':>12} {'>40':>4} {'figs':>4} {'ex':>3} "
        f"{'CPU s':>6} {'read':>6}"
    )
    lines = [head]
    for s in stats:
        cpu = "-" if s.seconds is None else f"{s.seconds:.1f}" + ("*" if s.contended else "")
        longest = f"{s.longest_cell[0]} @ {s.longest_cell[1]}" if s.code_cells else "-"
        lines.append(
            f"{s.chapter.label:<36} {s.words:>6,} {s.code_lines:>5} {longest:>12} {len(s.long_cells):>4} "
            f"{s.figures:>4} {s.exercises:>3} {cpu:>6} {_minutes(s.reading_minutes):>6}"
        )
    if len(stats) > 1:
        cpu = sum(s.seconds or 0.0 for s in stats)
        lines.append(
            f"{'total':<36} {sum(s.words for s in stats):>6,} {sum(s.code_lines for s in stats):>5} {'':>12} "
            f"{sum(len(s.long_cells) for s in stats):>4} {sum(s.figures for s in stats):>4} "
            f"{sum(s.exercises for s in stats):>3} {cpu:>6.1f} {_minutes(sum(s.reading_minutes for s in stats)):>6}"
        )
    long = [
        f"{s.chapter.number:02d} cell{'s' if len(s.long_cells) > 1 else ''} "
        + ", ".join(str(i) for i in s.long_cells)
        for s in stats
        if s.long_cells
    ]
    if long:
        lines.append(f"code cells over {LONG_CELL_LINES} lines: " + "; ".join(long))
    lines += [
        "words: prose in markdown cells; code: non-blank code lines; longest: lines @ cell number (all cells "
        f"counted from 1); >40: code cells over {LONG_CELL_LINES} lines; figs: stored figures; ex: exercises; "
        "CPU s: timings.json (* taken on a busy machine)",
        f"read: estimated reading time = words / {READING_WORDS_PER_MINUTE} a minute + "
        f"{MINUTES_PER_CODE_CELL:g} min a code cell + {MINUTES_PER_FIGURE:g} min a figure + "
        f"{MINUTES_PER_EXERCISE:g} min an exercise (the course's own estimate)",
    ]
    print("\n".join(lines), file=out or sys.stdout)
    return stats


def _minutes(m: float) -> str:
    m = int(round(m))
    return f"{m} min" if m < 60 else f"{m // 60}h{m % 60:02d}"


# ---------------------------------------------------------------------------------------------
# student edition
# ---------------------------------------------------------------------------------------------
def _stub_source(src: str) -> str:
    lines = src.splitlines()
    out, i = [], 0
    found = False
    while i < len(lines):
        m = BEGIN_RE.match(lines[i])
        if END_RE.match(lines[i]):
            raise BookError(f"`# END SOLUTION` on line {i + 1} without a `# BEGIN SOLUTION` before it")
        if not m:
            out.append(lines[i])
            i += 1
            continue
        found = True
        j = i + 1
        while j < len(lines) and not END_RE.match(lines[j]):
            if BEGIN_RE.match(lines[j]):
                raise BookError(f"`# BEGIN SOLUTION` on line {j + 1} inside another solution block")
            j += 1
        if j == len(lines):
            raise BookError(f"`# BEGIN SOLUTION` on line {i + 1} has no `# END SOLUTION`")
        hint = m.group("hint")
        if not hint:
            func = next((DEF_RE.match(x).group("name") for x in reversed(out) if DEF_RE.match(x)), None)
            hint = f"implement {func}" if func else "complete this cell"
        indent = m.group("indent")
        out.append(f"{indent}# YOUR CODE HERE")
        out.append(
            f"{indent}raise NotImplementedError({json.dumps('exercise: ' + hint, ensure_ascii=False)})"
        )
        i = j + 1
    if not found:
        raise BookError("no `# BEGIN SOLUTION` line")
    return "\n".join(out)


def _names(src: str) -> tuple:
    """(names a cell binds at its top level, names it reads from earlier cells), by Python's ast,
    statement by statement (a name the cell has bound already is its own). Names bound inside a
    function, lambda, class or comprehension (its arguments and locals) are neither; a read inside a
    function body counts (the function reads that global when called). A cell that does not parse (an
    IPython magic) falls back to every identifier in it, for both."""
    import ast

    try:
        tree = ast.parse(src)
    except SyntaxError:
        words = set(re.findall(r"[A-Za-z_]\w*", src))
        return words, words
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    comps = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

    def visit(node, nested: bool, stores: set, loads: set, local: set):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            (local if nested else stores).add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {(a.asname or a.name).split(".")[0] for a in node.names}
            (local if nested else stores).update(names)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.add(node.id)
            else:
                (local if nested else stores).add(node.id)
        inner = nested or isinstance(node, scopes + comps)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, stores, loads, local)

    defined, used = set(), set()
    for stmt in tree.body:  # in order: what a statement reads is evaluated before what it binds
        stores, loads, local = set(), set(), set()
        visit(stmt, False, stores, loads, local)
        used |= loads - (local - stores) - defined
        defined |= stores
    return defined, used


def student_cleared_cells(nb) -> list:
    """The numbers (all cells counted from 1) of the cells whose outputs the student edition clears: the
    ``solution`` cells and every later code cell that reads a name an exercise defines or a name computed
    from one (see :func:`student_notebook`). ``solution-only`` cells, dropped, are not listed."""
    cleared, tainted = [], set()  # tainted: names whose value comes from an exercise
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or SOLUTION_ONLY_TAG in tags:
            continue
        defined, used = _names(_join(cell.source))
        if SOLUTION_TAG in tags or used & tainted:
            cleared.append(i + 1)
            tainted |= defined
        else:
            tainted -= defined  # bound again by reference code: no longer the student's
    return cleared


def student_notebook(nb):
    """A copy of ``nb`` with solutions stubbed and solution-only cells dropped (see module docstring).

    The reference outputs stay, except in the cells whose output would come from the reference
    solution (:func:`student_cleared_cells`): the ``solution`` cells themselves (now ``exercise``) and
    every later code cell that reads a name an exercise defines or a name computed from one (followed
    through the notebook by the cells' ast): the check cells that pass the student's function to a
    checker, and whatever uses its results. Kept, such a cell would show the reference solution's result
    under an empty exercise. A cell that shows a checker on a deliberately wrong function written in
    the chapter keeps its output."""
    import nbformat

    nb = copy.deepcopy(nb)
    clear = set(student_cleared_cells(nb))
    cells = []
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if SOLUTION_ONLY_TAG in tags:
            continue
        if i + 1 in clear:
            cell.outputs = []
            cell.execution_count = None
        if SOLUTION_TAG in tags:
            try:
                cell.source = _stub_source(_join(cell.source))
            except BookError as e:
                raise BookError(f"cell {i + 1} (tagged `solution`): {e}") from None
            cell.metadata["tags"] = [EXERCISE_TAG if tag == SOLUTION_TAG else tag for tag in tags]
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop(META_KEY, None)
    return nbformat.from_dict(nb)


def student_edition(book: Book, outdir, keys=None, *, quiet: bool = False) -> list:
    """Write the student edition of the chapters to ``outdir``; returns the paths written.

    ``outdir`` gets book.toml, jupytext.toml (when the book has one) and ``<chapters_dir>/`` with each
    chapter's student .ipynb and its .py (percent format). Chapters without an .ipynb are skipped.
    """
    outdir = Path(outdir).resolve()
    if outdir == book.root.resolve() or outdir == book.chapters_dir.resolve():
        raise BookUsageError(f"the student edition must go elsewhere than the book itself ({outdir})")
    rel = (
        book.chapters_dir.relative_to(book.root)
        if book.chapters_dir.is_relative_to(book.root)
        else Path(book.chapters_dir.name)
    )
    chdir = outdir / rel
    chdir.mkdir(parents=True, exist_ok=True)
    written = []
    shutil.copyfile(book.path, outdir / BOOK_FILE)
    written.append(outdir / BOOK_FILE)
    jt = book.root / "jupytext.toml"
    if jt.is_file():
        shutil.copyfile(jt, outdir / "jupytext.toml")
        written.append(outdir / "jupytext.toml")
    skipped = []
    for c in book.select(keys):
        if not c.ipynb_exists:
            skipped.append(f"{c.number:02d}")
            continue
        snb = student_notebook(read_ipynb(c.ipynb_path))
        ipynb, py = chdir / c.ipynb_path.name, chdir / c.py_path.name
        _write_if_changed(ipynb, _ipynb_text(snb))
        _write_if_changed(py, render_py(snb, c.py_path))
        written += [ipynb, py]
        if not quiet:
            print(f"{c.label}: wrote {ipynb} and {py.name}")
    if skipped and not quiet:
        print(f"skipped {len(skipped)} chapter(s) without an .ipynb: {', '.join(skipped)}")
    return written


if __name__ == "__main__":  # python -m ddpm_lib.course.book: the ddpm-book command line
    from .commands import main

    sys.exit(main())
