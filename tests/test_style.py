"""The code style is ruff's, configured in pyproject.toml ([tool.ruff]): lint clean and formatted;
and the core modules' docstrings follow one style (below).

Run ``ruff format`` then ``ruff check --fix`` to make a change pass. Chapters are linted but not
reformatted (their code is stored with its outputs).
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


# ---- docstrings of the core modules ---------------------------------------------------------------
# One style (issue 11, item 8): every public function, class and method of the core has a docstring
# that ends with "Taught in chapter NN." (or "Taught in chapters NN and MM.", "chapters NN, MM and KK.")
# naming chapters that exist; shapes are written as tuples, (B, C, H, W), (B,), (T + 1,); an equation
# is cited with its paper (DDPM Eq. 7, Sohl-Dickstein et al. 2015 Eq. 14, DDIM Eq. 12, Algorithm 2 of
# DDPM, Nichol & Dhariwal 2021 Eq. 17). The modules are read as text (ast), not imported.

CORE = ("schedules", "gaussians", "mixtures", "diffusion", "sampling", "nets")
TAUGHT = re.compile(r"Taught in (?:chapter (\d\d)|chapters (\d\d(?:, \d\d)* and \d\d))\.")
# public names no chapter teaches, with the reason; their docstrings say so instead
NOT_TAUGHT = {"diffusion.progress_bar": "plumbing of the sampling loops and the bound"}
BAD_SHAPES = (
    # [B, C, H, W], [K x D], [N], [..., 256]; not an index such as alpha_bars[T], an interval [-1, 1]
    # or a list argument record=[...]
    (re.compile(r"(?<![\w\]\)=])\[\s*(?:[A-Z]{1,2}\d?|\.\.\.)\s*(?:,|\]|[x×])"), "a shape in brackets"),
    (re.compile(r"\b[A-Z]{1,2}\d?\s*[x×]\s*[A-Z]{1,2}\d?\b"), "a shape written B x C"),
    (re.compile(r"\bshapes?:?\s+[A-Z]{1,2}\d?\s*,\s*[A-Z]"), "a shape written shape B, C"),
)
EQUATION = re.compile(r"\b(?:Eqs?\.|Algorithm) \d")
PAPERS = ("DDPM", "Sohl-Dickstein et al. 2015", "DDIM", "Nichol & Dhariwal 2021", "Kingma et al. 2021")


def _chapter_numbers() -> set:
    return {p.name[:2] for p in (ROOT / "chapters").glob("[0-9][0-9]_*.py")}


def docstring_problems(source: str, module: str, chapters: set) -> list:
    """What is wrong with the docstrings of one core module's source, one line per problem."""
    tree = ast.parse(source)
    problems = []

    def shapes(where, doc):
        for pattern, what in BAD_SHAPES:
            for m in pattern.finditer(doc):
                problems.append(
                    f"{where}: {what}, {m.group(0)!r}: write shapes as (B, C, H, W), (B,), (T + 1,)"
                )

    def public(where, node):
        doc = ast.get_docstring(node)
        if not doc:
            problems.append(f"{where}: no docstring")
            return
        last = doc.strip().splitlines()[-1].strip()
        if where in NOT_TAUGHT:
            pass
        elif not (m := TAUGHT.fullmatch(last)):
            problems.append(f"{where}: the last line is {last!r}, not 'Taught in chapter NN.'")
        else:
            for nn in re.findall(r"\d\d", m.group(0)):
                if nn not in chapters:
                    problems.append(
                        f"{where}: 'Taught in' names chapter {nn}, and no chapters/{nn}_*.py exists"
                    )
        if EQUATION.search(doc) and not any(p in doc for p in PAPERS):
            problems.append(
                f"{where}: cites an equation without naming its paper (one of {', '.join(PAPERS)})"
            )

    # every docstring, public or private: shapes in one form
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if doc:
                shapes(f"{module}.{getattr(node, 'name', '<module>')}", doc)
    # the public ones: the module, its top-level functions and classes (those in __all__ and any other
    # without a leading underscore), and the public methods and properties of those classes
    public(module, tree)
    exported = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported = set(ast.literal_eval(node.value))
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in defs:
        if node.name.startswith("_") and node.name not in exported:
            continue
        public(f"{module}.{node.name}", node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith(
                    "_"
                ):
                    public(f"{module}.{node.name}.{item.name}", item)
    return problems


@pytest.mark.parametrize("module", CORE)
def test_core_docstrings_name_their_chapter_and_write_shapes_one_way(module):
    source = (ROOT / "ddpm_lib" / f"{module}.py").read_text(encoding="utf-8")
    problems = docstring_problems(source, module, _chapter_numbers())
    assert not problems, "\n".join(problems)


BAD_MODULE = '''"""A module whose docstrings break every rule.

Taught in chapter 03.
"""

__all__ = ["undocumented", "untaught", "no_such_chapter", "brackets", "times", "bare", "Thing"]


def undocumented(x):
    return x


def untaught(x):
    """Returns x."""


def no_such_chapter(x):
    """Returns x.

    Taught in chapter 99.
    """


def brackets(x):
    """x: a tensor [B, C, H, W].

    Taught in chapter 03.
    """


def times(x):
    """x: a B x C tensor.

    Taught in chapter 03.
    """


def bare(x):
    """x has shape B,C and follows Eq. 7.

    Taught in chapters 03 and 04.
    """


class Thing:
    """A class.

    Taught in chapter 03.
    """

    def method(self):
        pass

    def _private(self):
        pass
'''


def test_the_docstring_check_catches_each_kind_of_mistake():
    problems = "\n".join(docstring_problems(BAD_MODULE, "bad", {"03", "04"}))
    for expected in (
        "bad.undocumented: no docstring",
        "bad.untaught: the last line is 'Returns x.'",
        "bad.no_such_chapter: 'Taught in' names chapter 99",
        "bad.brackets: a shape in brackets, '[B,'",
        "bad.times: a shape written B x C, 'B x C'",
        "bad.bare: a shape written shape B, C",
        "bad.bare: cites an equation without naming its paper",
        "bad.Thing.method: no docstring",
    ):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"
    assert "_private" not in problems and "bad:" not in problems  # private methods and a good module pass
    good = docstring_problems(
        '"""Fine: x (B, C, H, W), alpha_bars[T], [-1, 1] (DDPM Eq. 4).\n\nTaught in chapters 03, 04 and 05.\n"""\n',
        "good",
        {"03", "04", "05"},
    )
    assert good == []
