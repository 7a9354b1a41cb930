"""Fences around ddpm_lib's layers (README, "Architecture"; ../shared/DESIGN.md).

Read from the source with ``ast`` (nothing is imported), so a violation fails here whatever the
import order at run time:
- a module imports only its own layer and those below it; the core imports only torch, numpy,
  tqdm (for the progress bar of the sampling loops), the standard library and the core;
- no circle of imports between modules (imports inside functions count; ``if TYPE_CHECKING``
  blocks do not);
- no private name (``_x``) is imported from another module, in the library or in a chapter,
  script or benchmark;
- an entry point imports the command lines and nothing else of the library: a module-level
  ``if __name__ == "__main__":`` block (how ``python -m ddpm_lib.sample`` runs ``ddpm-sample``) or a
  module named ``__main__`` (``python -m ddpm_lib.train``). Its imports run only when the module
  is the program, never when it is imported, so they are not the module's dependencies: they
  count neither for the layers nor for the circles, only for this rule and the private names.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ddpm_lib"

# the layers, bottom up; a module's layer is that of its longest matching prefix
LAYERS = {
    "core": [
        "ddpm_lib.version",
        "ddpm_lib.schedules",
        "ddpm_lib.gaussians",
        "ddpm_lib.mixtures",
        "ddpm_lib.diffusion",
        "ddpm_lib.sampling",
        "ddpm_lib.nets",
    ],
    "storage": [
        "ddpm_lib.utils",
        "ddpm_lib.data",
        "ddpm_lib.cifar",
        "ddpm_lib.checkpoints",
        "ddpm_lib.pretrained",
        "ddpm_lib.interop",
        "ddpm_lib.metrics",
        "ddpm_lib.trajectories",
    ],
    "engine": [
        "ddpm_lib.train",
        "ddpm_lib.evaluate",
        "ddpm_lib.classifier",
        "ddpm_lib.viz",
        "ddpm_lib.sample",
        "ddpm_lib.ablations",
    ],
    "cli": ["ddpm_lib.cli"],
    "course": ["ddpm_lib.course"],
}
ORDER = list(LAYERS)
# the package's __init__ re-exports public names from every layer below the CLIs
PACKAGE_INIT_LAYER = "engine"
# tqdm draws the progress bar of the sampling loops (one wrapper, ddpm_lib.sampling); nothing else
CORE_THIRD_PARTY = {"torch", "numpy", "tqdm"}

# Violations that exist today and are being removed (issue 11). The test fails when one of them
# disappears without being taken off this list, so the list can only shrink.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[tuple[str, str]] = set()
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()


def module_name(path: Path, base: Path = ROOT) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _type_checking_block(node) -> bool:
    t = node.test
    return isinstance(node, ast.If) and (
        getattr(t, "id", None) == "TYPE_CHECKING" or getattr(t, "attr", None) == "TYPE_CHECKING"
    )


def _main_block(node) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    t = getattr(node, "test", None)
    if not (
        isinstance(node, ast.If)
        and isinstance(t, ast.Compare)
        and len(t.ops) == 1
        and isinstance(t.ops[0], ast.Eq)
    ):
        return False
    sides = (t.left, t.comparators[0])
    return any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and any(
        isinstance(x, ast.Constant) and x.value == "__main__" for x in sides
    )


def is_entry_point_module(name: str) -> bool:
    """A module named ``__main__`` is the program ``python -m package`` runs: an entry point as a whole."""
    return name.rsplit(".", 1)[-1] == "__main__"


def imports(path: Path, name: str, part: str = "module") -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file, relative ones
    resolved against ``name``; imports under ``if TYPE_CHECKING:`` are left out.

    ``part``: "module", the imports of the module proper; "entry", those of its entry point (a
    module-level ``if __name__ == "__main__":`` block, or all of a ``__main__`` module); "all".
    """
    assert part in ("module", "entry", "all")
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node, entry):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_block(child):
                for sub in child.orelse:
                    visit_one(sub, entry)
                continue
            if node is tree and _main_block(child):
                for sub in child.body:
                    visit_one(sub, True)
                for sub in child.orelse:
                    visit_one(sub, entry)
                continue
            visit_one(child, entry)

    def visit_one(child, entry):
        keep = part == "all" or (part == "entry") == entry
        if isinstance(child, ast.Import) and keep:
            out.extend((a.name, [], child.lineno) for a in child.names)
        elif isinstance(child, ast.ImportFrom) and keep:
            if child.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (child.level - 1)]
                mod = ".".join(pkg + ([child.module] if child.module else []))
            else:
                mod = child.module
            names = [a.name for a in child.names]
            out.append((mod, names, child.lineno))
        visit(child, entry)

    visit(tree, is_entry_point_module(name))
    return out


def resolve(mod: str, names: list[str], known: dict) -> list[str]:
    """The library modules an import statement loads: ``from pkg import sub`` loads pkg.sub."""
    subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
    if names and len(subs) == len(names):  # from package import submodule, ...: the submodules
        return subs
    return ([mod] if mod in known else []) + subs


def layer_of(mod: str) -> str | None:
    if mod == "ddpm_lib":
        return PACKAGE_INIT_LAYER
    best = None
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (layer, p)
    return best[0] if best else None


def graph() -> dict[str, set[str]]:
    known = library_modules()
    g = {}
    for name, path in known.items():
        deps = set()
        for mod, names, _ in imports(path, name):
            if mod and mod.split(".")[0] == "ddpm_lib":
                deps.update(d for d in resolve(mod, names, known) if d != name)
        g[name] = deps
    return g


def test_every_module_has_a_layer():
    missing = [m for m in library_modules() if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {missing}"


def upward_imports() -> set[tuple[str, str]]:
    bad = set()
    for mod, deps in graph().items():
        if mod == "ddpm_lib":
            continue
        for dep in deps:
            if dep == "ddpm_lib":  # the package itself: its __init__ pulls in every layer below the CLIs
                dep_layer = PACKAGE_INIT_LAYER
            else:
                dep_layer = layer_of(dep)
            if ORDER.index(dep_layer) > ORDER.index(layer_of(mod)):
                bad.add((mod, dep))
    return bad


def test_no_module_imports_a_layer_above_it():
    bad = upward_imports()
    new = sorted(bad - KNOWN_UPWARD)
    assert not new, "imports of a higher layer:\n" + "\n".join(
        f"  {a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in new
    )
    gone = sorted(KNOWN_UPWARD - bad)
    assert not gone, f"fixed, so take them off KNOWN_UPWARD: {gone}"


def test_the_core_imports_only_torch_numpy_the_standard_library_and_itself():
    known = library_modules()
    bad = []
    for name, path in known.items():
        if layer_of(name) != "core":
            continue
        for mod, names, line in imports(path, name, "all"):
            top = (mod or "").split(".")[0]
            if top == "ddpm_lib":
                for dep in resolve(mod, names, known) or [mod]:
                    if layer_of(dep) != "core":
                        bad.append(f"{path.relative_to(ROOT)}:{line} imports {dep}")
            elif top not in CORE_THIRD_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "the core must stand alone:\n  " + "\n  ".join(bad)


def cycles(g: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every strongly connected component of more than one module (Tarjan), as a sorted tuple."""
    index, low, stack, on, out, counter = {}, {}, [], set(), set(), [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(tuple(sorted(comp)))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def test_no_circle_of_imports():
    # a package's __init__ importing its own submodules is how a package re-exports, not a circle
    g = {
        m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")}
        for m, deps in graph().items()
    }
    found = cycles(g)
    new = sorted(found - KNOWN_CYCLES)
    assert not new, "modules that import each other (directly or around a circle): " + "; ".join(
        " <-> ".join(c) for c in new
    )
    gone = sorted(KNOWN_CYCLES - found)
    assert not gone, f"fixed, so take them off KNOWN_CYCLES: {gone}"


def test_the_fence_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


# the course's tools have their command line in their own layer (ddpm-book: list ... html)
COURSE_COMMAND_LINES = {"ddpm_lib.course.commands"}


def entry_point_problems(paths_and_names) -> list[str]:
    """Imports of the library, in an entry point, of anything but a command line (ddpm_lib.cli, or
    the course tools' ddpm_lib.course.commands)."""
    known = library_modules()
    bad = []
    for name, path in paths_and_names:
        for mod, names, line in imports(path, name, "entry"):
            if mod and mod.split(".")[0] == "ddpm_lib":
                bad += [
                    f"{name}:{line} imports {dep} in its entry point"
                    for dep in resolve(mod, names, known) or [mod]
                    if layer_of(dep) != "cli" and dep not in COURSE_COMMAND_LINES
                ]
    return bad


def test_entry_points_import_only_the_command_lines():
    bad = entry_point_problems(library_modules().items())
    assert not bad, "an entry point runs a command line and nothing else:\n  " + "\n  ".join(bad)
    # every python -m ddpm_lib.<module> that the course documents has one (tests/test_cli.py runs them)
    with_entry = {n for n, p in library_modules().items() if imports(p, n, "entry")}
    assert with_entry >= {
        f"ddpm_lib.{m}"
        for m in ("sample", "evaluate", "pretrained", "data", "cifar", "classifier", "train.__main__")
    }


def test_the_fence_sees_entry_points(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import os\n"
        "if __name__ == '__main__':\n    from ddpm_lib.cli.sample import main\n"
        "else:\n    from . import schedules\n"
        "def f():\n    if '__main__' == __name__:\n        from ddpm_lib.cli import data\n"
    )
    entry = imports(f, "ddpm_lib.sample", "entry")
    assert entry == [("ddpm_lib.cli.sample", ["main"], 3)]
    own = imports(f, "ddpm_lib.sample")
    assert ("ddpm_lib.cli.sample", ["main"], 3) not in own and ("ddpm_lib", ["schedules"], 5) in own
    assert ("ddpm_lib.cli", ["data"], 8) in own  # only a module-level block is an entry point
    assert len(imports(f, "ddpm_lib.sample", "all")) == len(own) + 1
    assert entry_point_problems([("ddpm_lib.sample", f)]) == []
    # a module named __main__ is an entry point as a whole
    g = tmp_path / "__main__.py"
    g.write_text("import sys\nfrom ddpm_lib.cli.train import main\nfrom ddpm_lib.course import book\n")
    assert imports(g, "ddpm_lib.train.__main__") == []
    assert entry_point_problems([("ddpm_lib.train.__main__", g)]) == [
        "ddpm_lib.train.__main__:3 imports ddpm_lib.course.book in its entry point"
    ]
    # and an entry point's private import is still one
    f.write_text("if __name__ == '__main__':\n    from ddpm_lib.cli.sample import _x\n")
    assert private_imports([("ddpm_lib.sample", f)]) == {("ddpm_lib.sample", "ddpm_lib.cli.sample", "_x")}


def private_imports(paths_and_names) -> set[tuple[str, str, str]]:
    known = library_modules()
    bad = set()
    for name, path in paths_and_names:
        for mod, names, _ in imports(path, name, "all"):
            if not mod or mod.split(".")[0] != "ddpm_lib":
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__") and f"{mod}.{n}" not in known and mod != name:
                    bad.add((name, mod, n))
    return bad


def test_no_private_name_is_imported_across_library_modules():
    found = private_imports(library_modules().items())
    new = sorted(found - KNOWN_PRIVATE)
    assert not new, (
        "private names imported from another module (make them public or move them):\n"
        + "\n".join(f"  {a}: from {b} import {n}" for a, b, n in new)
    )
    gone = sorted(KNOWN_PRIVATE - found)
    assert not gone, f"fixed, so take them off KNOWN_PRIVATE: {gone}"


@pytest.mark.parametrize("folder", ["chapters", "scripts", "benchmarks"])
def test_chapters_scripts_and_benchmarks_use_public_names_only(folder):
    files = sorted((ROOT / folder).glob("*.py"))
    assert files
    found = private_imports((module_name(p), p) for p in files)
    assert not found, f"{folder}/ imports private names of ddpm_lib: " + "; ".join(
        f"{a}: from {b} import {n}" for a, b, n in sorted(found)
    )
    # attribute access too: ddpm_lib.x._y or alias._y where alias is a ddpm_lib module
    bad = []
    for p in files:
        tree = ast.parse(p.read_text(), str(p))
        aliases = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for a in node.names
            if (isinstance(node, ast.Import) and a.name.startswith("ddpm_lib"))
            or (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("ddpm_lib")
                and f"{node.module}.{a.name}" in library_modules()
            )
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                bad.append(f"{p.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, f"{folder}/ uses private names of ddpm_lib: {bad}"


def test_the_fences_see_a_violation(tmp_path):
    # a private import and a relative import resolved to the right module
    f = tmp_path / "m.py"
    f.write_text("from ..data import _load_registry\nfrom . import schedules\n")
    got = imports(f, "ddpm_lib.train.m")
    assert ("ddpm_lib.data", ["_load_registry"], 1) in got and ("ddpm_lib.train", ["schedules"], 2) in got
    assert private_imports([("ddpm_lib.train.m", f)]) == {
        ("ddpm_lib.train.m", "ddpm_lib.data", "_load_registry")
    }
    assert (
        layer_of("ddpm_lib.train.trainer") == "engine"
        and layer_of("ddpm_lib.course.widgets.decoder") == "course"
    )
