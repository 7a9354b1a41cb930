"""ddpm_lib.course.book: the course tooling, on a tiny fixture book (tests/fixtures/book) and on the real one.

The fixture has two chapters: 01_basics (a `solution` cell, a `solution-only` cell) and 02_slider (an
ipywidgets slider with an Output widget, tagged nbval-ignore-output). Its .ipynb files were executed
by `python -m ddpm_lib.course.book --book tests/fixtures/book execute --all`; every test works on a copy.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ddpm_lib.course import book as B
from ddpm_lib.course.commands import main

FIXTURE = Path(__file__).parent / "fixtures" / "book"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path):
    dst = tmp_path / "book"
    shutil.copytree(
        FIXTURE, dst, ignore=shutil.ignore_patterns("timings.json", "*.tmp", ".ipynb_checkpoints")
    )
    return B.load_book(dst)


def cli(book, *args):
    """Run the command line in-process; returns (exit code, stdout + stderr)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["--book", str(book.path), *args])
    return rc, out.getvalue()


def read(path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path):
    Path(path).write_text(B._ipynb_text(nb), encoding="utf-8")


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ---- book.toml ---------------------------------------------------------------------------
def test_load_and_list(tiny):
    chapters = B.list_chapters(tiny.path)
    assert [(c.number, c.id, c.stem, c.budget_s, c.track) for c in chapters] == [
        (1, "basics", "01_basics", 30.0, "theory"),
        (2, "slider", "02_slider", 30.0, "practice"),
    ]
    assert all(c.py_exists and c.ipynb_exists for c in chapters)
    assert tiny.chapter("1").id == tiny.chapter("01").id == tiny.chapter("01_basics").id == "basics"
    with pytest.raises(B.BookError, match="no chapter 'nope'"):
        tiny.chapter("nope")
    rc, out = cli(tiny, "list")
    assert rc == 0 and re.search(r"01\s+basics\s+theory\s+30s\s+yes\s+yes", out)


def test_load_book_rejects_bad_manifests(tmp_path):
    p = tmp_path / "book.toml"
    p.write_text(
        '[book]\n[[chapter]]\nid = "a"\nnumber = 0\ntitle = "A"\nstem = "00_a"\nbudget_s = 5\n'
        '[[chapter]]\nid = "a"\nnumber = 1\ntitle = "B"\nstem = "01_b"\nbudget_s = 5\n'
    )
    with pytest.raises(B.BookError, match="ids must be unique"):
        B.load_book(p)
    p.write_text('[book]\n[[chapter]]\nid = "a"\nnumber = 0\ntitle = "A"\nstem = "00_a"\n')
    with pytest.raises(B.BookError, match="lacks budget_s"):
        B.load_book(tmp_path)
    with pytest.raises(B.BookError, match="no book.toml"):
        B.load_book(tmp_path / "elsewhere")


def test_real_book_is_found_from_the_package():
    b = B.load_book()
    assert b.path == REPO / "book.toml"
    assert b.chapters[0].id == "start-here" and len(b.chapters) == 15


# ---- check -------------------------------------------------------------------------------
def test_check_passes_on_the_fixture(tiny):
    assert B.check_book(tiny) == []
    rc, out = cli(tiny, "check")
    assert rc == 0 and "check: OK (2 chapter(s) checked)" in out


def test_check_fails_when_the_py_is_edited_without_sync(tiny):
    py = tiny.chapter("basics").py_path
    py.write_text(
        py.read_text().replace(
            'print(f"sqrt(2) = {math.sqrt(2):.4f}")', 'print(f"sqrt(3) = {math.sqrt(3):.4f}")'
        )
    )
    rc, out = cli(tiny, "check")
    assert rc == 1
    assert "chapter 01 basics (01_basics): 01_basics.py and 01_basics.ipynb differ" in out
    assert '-print(f"sqrt(3)' in out and '+print(f"sqrt(2)' in out  # the diff: .py (-) vs rendered .ipynb (+)
    assert "02 slider" not in out


def test_check_fails_when_an_ipynb_is_missing(tiny):
    c = tiny.chapter("slider")
    c.ipynb_path.unlink()
    rc, out = cli(tiny, "check")
    assert rc == 1 and "chapter 02 slider (02_slider): 02_slider.ipynb is missing" in out
    # --allow-missing skips only chapters that have no files at all
    assert cli(tiny, "check", "--allow-missing")[0] == 1
    c.py_path.unlink()
    assert cli(tiny, "check", "--allow-missing")[0] == 0
    assert cli(tiny, "check")[0] == 1


def test_check_fails_when_a_cell_was_not_executed(tiny):
    c = tiny.chapter("basics")
    nb = read(c.ipynb_path)
    cell = code_cells(nb)[-1]
    cell.execution_count, cell.outputs = None, []
    write(nb, c.ipynb_path)
    rc, out = cli(tiny, "check")
    assert rc == 1 and "chapter 01 basics" in out and "have not been executed" in out


def test_check_fails_when_the_outputs_are_not_one_clean_run(tiny):
    c = tiny.chapter("basics")
    nb = read(c.ipynb_path)
    cells = code_cells(nb)
    cells[0].execution_count, cells[1].execution_count = 2, 1  # run out of order in an interactive session
    write(nb, c.ipynb_path)
    problems = B.check_book(tiny)
    assert any("one clean top-to-bottom run" in p.message for p in problems)


def test_sync_keeps_outputs_and_ids_and_check_sees_stale_outputs(tiny):
    c = tiny.chapter("basics")
    before = read(c.ipynb_path)
    py = c.py_path
    py.write_text(
        py.read_text()
        .replace("# # Basics", "# # Basics, revised")
        .replace('print("✓ add_one matches")', 'print("✓ add_one matches (revised)")')
    )
    assert B.sync_chapter(c, quiet=True)
    after = read(c.ipynb_path)
    assert [x.id for x in after.cells] == [x.id for x in before.cells]
    assert after.cells[0].source.startswith("# Basics, revised")
    assert code_cells(after)[0].outputs == code_cells(before)[0].outputs  # unchanged cell keeps its output
    # the .py and .ipynb agree now, but the last cell's output is from the old code
    problems = B.check_book(tiny)
    assert len(problems) == 1 and "changed since it was executed" in problems[0].message
    # a markdown-only edit does not make outputs stale
    shutil.copy(FIXTURE / "chapters" / "01_basics.py", py)
    py.write_text(py.read_text().replace("# # Basics", "# # Basics, retitled"))
    B.sync_chapter(c, quiet=True)
    assert B.check_book(tiny) == []


def test_check_reports_tags_that_hide_deterministic_output(tiny):
    c = tiny.chapter("basics")
    py = c.py_path
    text = py.read_text()
    assert text.count("# %%\nimport math") == 1
    py.write_text(text.replace("# %%\nimport math", '# %% tags=["nbval-ignore-output"]\nimport math'))
    B.sync_chapter(c, quiet=True)
    problems = B.check_book(tiny)
    assert len(problems) == 1, problems
    assert "only widget, progress-bar and %%time cells may skip" in problems[0].message
    assert "cell 2 (nbval-ignore-output: 'import math')" in problems[0].message


def test_check_enforces_the_solution_convention(tiny):
    c = tiny.chapter("basics")
    py = c.py_path
    py.write_text(py.read_text().replace('# %% tags=["solution"]\n', "# %%\n"))
    B.sync_chapter(c, quiet=True)
    msgs = [p.message for p in B.check_book(tiny)]
    assert any("BEGIN SOLUTION" in m and "not tagged `solution`" in m for m in msgs), msgs


# ---- execute -------------------------------------------------------------------------------
@pytest.mark.slow
def test_execute_twice_gives_byte_identical_notebooks(tiny):
    assert cli(tiny, "execute")[0] == 2  # no chapter named and no --all: a usage error
    B.execute_book(tiny, all_chapters=True, quiet=True)
    first = {c.id: c.ipynb_path.read_bytes() for c in tiny.chapters}
    B.execute_book(tiny, ["basics", "2"], quiet=True)
    second = {c.id: c.ipynb_path.read_bytes() for c in tiny.chapters}
    assert first == second
    assert B.check_book(tiny) == []

    nb = read(tiny.chapter("slider").ipynb_path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "version" not in nb.metadata["language_info"]
    assert all("execution" not in cell.metadata for cell in nb.cells)
    view = code_cells(nb)[1].outputs[0].data[B.WIDGET_VIEW_MIME]
    assert view["model_id"] == B._new_widget_id(0)
    state = nb.metadata["widgets"][B.WIDGET_STATE_MIME]["state"]
    assert set(state) == {B._new_widget_id(i) for i in range(len(state))}
    refs = set(re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(state)))
    assert refs <= set(state)  # every reference points at a renamed model
    outputs = [m for m in state.values() if m["model_name"] == "OutputModel"]
    assert outputs[0]["state"]["outputs"][0]["text"] == "t = 7, t^2 = 49\n"
    first_output = code_cells(read(tiny.chapter("basics").ipynb_path))[0].outputs[0].text
    assert "executing under the book tool: True" in first_output

    timings = json.loads(tiny.timings_path.read_text())
    assert set(timings) == {"basics", "slider"}
    assert all(
        v["seconds"] > 0 and v["machine"] and re.fullmatch(r"\d{4}-\d\d-\d\d", v["date"])
        for v in timings.values()
    )


@pytest.mark.slow
def test_execute_refuses_to_store_a_bare_residual_and_check_reports_it(tiny):
    """A chapter that prints a residual as digits (``max |diff| 3.1e-15``) would not replay on another CPU."""
    c = tiny.chapter("basics")
    before = c.ipynb_path.read_bytes()
    c.py_path.write_text(
        c.py_path.read_text() + '\n# %%\nprint(f"library vs formula: max |diff| {3.1e-15:.1e}")\n'
    )
    with pytest.raises(
        B.BookError,
        match=r"(?s)chapter 01 basics: 1 printed number\(s\) would not replay.*nothing "
        r"was written.*cell 6: 'library vs formula: max \|diff\| 3\.1e-15'.*below\(value, tol\)",
    ):
        B.execute_chapter(c, quiet=True, record=False)
    assert code_cells(read(c.ipynb_path))[-1].outputs == []  # synced inputs, no stored output
    # the same output stored by hand: `check` reports it, with the fix
    nb = read(c.ipynb_path)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="max |diff| 3.1e-15\n")]
    write(nb, c.ipynb_path)
    problems = [str(p) for p in B.check_book(tiny, ["basics"])]
    assert any(
        "would not replay on another CPU" in p and "'3.1e-15' is below 1e-12" in p for p in problems
    ), problems
    # printed as a verdict, it is stored
    c.py_path.write_text(
        c.py_path.read_text().replace(
            "max |diff| {3.1e-15:.1e}",
            "max |diff| {__import__('ddpm_lib.course.replay').course.replay.below(3.1e-15)}",
        )
    )
    B.execute_chapter(c, quiet=True, record=False)
    assert "library vs formula: max |diff| < 1e-12" in code_cells(read(c.ipynb_path))[-1].outputs[0].text
    assert B.check_book(tiny, ["basics"]) == []
    assert before != c.ipynb_path.read_bytes()


def test_execute_reports_a_failing_cell(tiny):
    c = tiny.chapter("basics")
    c.py_path.write_text(c.py_path.read_text() + '\n# %%\nraise RuntimeError("boom")\n')
    with pytest.raises(B.BookError, match=r"chapter 01 basics: execution failed(.|\n)*boom"):
        B.execute_chapter(c, quiet=True, record=False)


def test_normalize_notebook_is_deterministic_and_resolves_progress_bars():
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("for i in tqdm(range(2)): pass", execution_count=1)
    cell.metadata["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00"}
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\r 50%|#    | 1/2 [00:01<00:01,  1.00it/s]"),
        nbformat.v4.new_output("stream", name="stderr", text="\r100%|#####| 2/2 [00:02<00:00,  1.00it/s]\n"),
        nbformat.v4.new_output(
            "display_data", data={B.WIDGET_VIEW_MIME: {"model_id": "a" * 32}, "text/plain": "HBox()"}
        ),
    ]
    nb.cells = [cell]
    nb.metadata["widgets"] = {
        B.WIDGET_STATE_MIME: {
            "state": {
                "b" * 32: {"model_name": "LayoutModel", "state": {}},
                "a" * 32: {
                    "model_name": "HBoxModel",
                    "state": {"children": ["IPY_MODEL_" + "c" * 32], "layout": "IPY_MODEL_" + "b" * 32},
                },
                "c" * 32: {"model_name": "HTMLModel", "state": {"value": " 2/2 [00:02&lt;00:00,  1.00it/s]"}},
            },
            "version_major": 2,
            "version_minor": 0,
        }
    }
    B.normalize_notebook(nb)
    out = nb.cells[0].outputs
    assert len(out) == 2 and out[0].text == "100%|#####| 2/2 [TIME]\n"
    assert "execution" not in nb.cells[0].metadata and "version" not in nb.metadata["language_info"]
    ids = [B._new_widget_id(i) for i in range(3)]
    assert out[1].data[B.WIDGET_VIEW_MIME]["model_id"] == ids[0]
    state = nb.metadata["widgets"][B.WIDGET_STATE_MIME]["state"]
    assert list(state) == ids  # the view, then its references in sorted key order: children, then layout
    assert state[ids[0]]["state"] == {"children": ["IPY_MODEL_" + ids[1]], "layout": "IPY_MODEL_" + ids[2]}
    assert state[ids[1]]["state"]["value"] == " 2/2 [TIME]"
    again = B.normalize_notebook(nbformat.from_dict(json.loads(json.dumps(nb))))
    assert B._ipynb_text(again) == B._ipynb_text(nb)  # idempotent


def test_sanitize_file_matches_the_patterns_execute_applies():
    from nbval.plugin import get_sanitize_patterns

    cfg = (REPO / "chapters" / "nbval_sanitize.cfg").read_text()
    assert [tuple(p) for p in get_sanitize_patterns(cfg)] == [tuple(p) for p in B.PROGRESS_PATTERNS]


# ---- times ---------------------------------------------------------------------------------
def test_times_fails_when_a_budget_is_exceeded(tiny):
    def timings(basics, slider):
        tiny.timings_path.write_text(
            json.dumps(
                {
                    "basics": {"seconds": basics, "machine": "test", "date": "2025-01-01"},
                    "slider": {"seconds": slider, "machine": "test", "date": "2025-01-01"},
                }
            )
        )

    timings(10.0, 20.0)
    rc, out = cli(tiny, "times")
    assert rc == 0 and "2 of 2 chapters measured" in out
    timings(31.0, 5.0)  # a chapter over its own budget (30 s) and the theory total (30 s)
    rc, out = cli(tiny, "times")
    assert rc == 1 and re.search(r"01 basics\s+31.0s\s+30s  OVER", out)
    timings(29.0, 29.0)  # 58 s within total_budget_s = 60
    assert cli(tiny, "times")[0] == 0
    tiny.timings_path.write_text(
        json.dumps({"basics": {"seconds": 29.0}, "slider": {"seconds": 29.0}, "extra": {"seconds": 100.0}})
    )
    assert cli(tiny, "times")[0] == 0  # ids not in book.toml are ignored
    timings(25.0, 29.0)
    raw = tiny.path.read_text().replace("total_budget_s = 60", "total_budget_s = 50")
    tiny.path.write_text(raw)
    rc, out = cli(tiny, "times")
    assert rc == 1 and re.search(r"all chapters \(measured ones\)\s+54.0s\s+50s  OVER", out)


def test_times_on_a_busy_machine_are_not_measurements(tiny):
    busy = {"seconds": 95.0, "machine": "test", "date": "2025-01-01", "load": 7.5, "cpus": 2}
    idle = {"seconds": 25.0, "machine": "test", "date": "2025-01-01", "load": 1.9, "cpus": 2}
    tiny.timings_path.write_text(json.dumps({"basics": busy, "slider": idle}))
    rc, out = cli(tiny, "times")
    assert (
        rc == 0
        and "not a measurement: taken under load 7.5 on 2 CPUs" in out
        and "1 of 2 chapters measured" in out
    )
    tiny.timings_path.write_text(json.dumps({"basics": dict(busy, load=2.9), "slider": idle}))
    rc, out = cli(tiny, "times")  # load 2.9 <= 1.5 x 2 CPUs: a measurement, and over budget
    assert rc == 1 and re.search(r"01 basics\s+95.0s\s+30s  OVER", out)
    assert B.contended({"load": 3.1, "cpus": 2}) and not B.contended({"seconds": 1.0})
    assert B.contended({"seconds": 1.0, "contended": "other jobs ran"})


# ---- stats ---------------------------------------------------------------------------------
def test_stats_on_the_fixture(tiny):
    tiny.timings_path.write_text(
        json.dumps(
            {
                "basics": {"seconds": 3.25, "machine": "test", "date": "2025-01-01"},
                "slider": {"seconds": 9.0, "machine": "test", "date": "2025-01-01", "load": 7.5, "cpus": 2},
            }
        )
    )
    basics, slider = (B.chapter_stats(c) for c in tiny.chapters)
    # 01_basics: "# Basics" + a sentence with inline LaTeX (12 tokens holding a letter or a digit); code cells
    # of 5, 6, 1 and 2 lines (13 non-blank: blank lines inside a cell do not count), the longest is cell 3
    assert (basics.words, basics.code_cells, basics.code_lines) == (12, 4, 13)
    assert basics.longest_cell == (6, 3) and basics.long_cells == () and basics.figures == 0
    assert basics.exercises == 1 and basics.seconds == 3.25 and not basics.contended
    assert basics.reading_minutes == pytest.approx(12 / 150 + 4 * 1.0 + 10.0)
    assert slider.longest_cell == (13, 3) and slider.seconds == 9.0 and slider.contended
    # a figure stored in the .ipynb and a 45-line cell in the .py are seen
    nb = read(tiny.chapter("slider").ipynb_path)
    nb.cells[-1].outputs.append(
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    )
    write(nb, tiny.chapter("slider").ipynb_path)
    py = tiny.chapter("slider").py_path
    py.write_text(py.read_text() + "\n# %%\n" + "".join(f"a{i} = {i}\n" for i in range(45)))
    slider = B.chapter_stats(tiny.chapter("slider"))
    assert slider.figures == 1 and slider.long_cells == (5,) and slider.longest_cell == (45, 5)
    assert slider.reading_minutes == pytest.approx(19 / 150 + 4 + 1)
    rc, out = cli(tiny, "stats")
    assert rc == 0
    assert re.search(r"01 basics\s+12\s+13\s+6 @ 3\s+0\s+0\s+1\s+3\.2\s+14 min", out), out
    assert re.search(r"02 slider\s+19\s+57\s+45 @ 5\s+1\s+1\s+0\s+9\.0\*\s+5 min", out), out
    assert "code cells over 40 lines: 02 cell 5" in out and "words / 150 a minute" in out
    rc, out = cli(tiny, "stats", "1")
    assert rc == 0 and "01 basics" in out and "02 slider" not in out and "total" not in out
    assert cli(tiny, "stats", "nope")[0] == 2


# ---- student edition -------------------------------------------------------------------------
def test_student_edition_stubs_solutions_and_drops_solution_only_cells(tiny, tmp_path):
    out = tmp_path / "student"
    rc, log = cli(tiny, "student", str(out))
    assert rc == 0
    assert (out / "book.toml").read_text() == tiny.path.read_text()
    assert (out / "jupytext.toml").is_file()
    nb = read(out / "chapters" / "01_basics.ipynb")
    ref = read(tiny.chapter("basics").ipynb_path)
    assert len(nb.cells) == len(ref.cells) - 1  # the solution-only cell is gone
    assert not any("the reference solution gives" in c.source for c in nb.cells)
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
    sol = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(sol) == 1 and sol[0].outputs == [] and sol[0].execution_count is None
    assert sol[0].source == (
        'def add_one(x):\n    """Return x + 1."""\n    # YOUR CODE HERE\n'
        '    raise NotImplementedError("exercise: implement add_one")'
    )
    assert "ddpm_course" not in nb.metadata
    # the reference outputs stay, except the exercise's and the check cell's (it uses add_one)
    kept, cleared = code_cells(nb)[0], code_cells(nb)[-1]
    assert kept.outputs == code_cells(ref)[0].outputs and kept.execution_count == 1
    assert "add_one(2)" in cleared.source and cleared.outputs == [] and cleared.execution_count is None
    assert B.student_cleared_cells(ref) == [3, 5]
    slider = read(out / "chapters" / "02_slider.ipynb")
    assert all(c.outputs for c in code_cells(slider)[1:])  # no exercise there: every output kept
    # the .py is the student notebook in percent format, and pairs with it
    py = (out / "chapters" / "01_basics.py").read_text()
    assert 'raise NotImplementedError("exercise: implement add_one")' in py and "y = x + 1" not in py
    assert py == B.render_py(nb, out / "chapters" / "01_basics.py")
    assert (out / "chapters" / "02_slider.ipynb").is_file()
    with pytest.raises(B.BookError, match="elsewhere"):
        B.student_edition(tiny, tiny.root, quiet=True)


def _nb(*cells):
    """A notebook of code cells given as (source, tags), each with one stored output."""
    nb = nbformat.v4.new_notebook()
    for i, (src, tags) in enumerate(cells):
        c = nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {}, execution_count=i + 1)
        c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"out {i + 1}\n")]
        nb.cells.append(c)
    return nb


def test_student_edition_clears_exactly_what_depends_on_an_exercise():
    nb = _nb(
        ("import torch\nx = torch.ones(3)\nprint(x)", []),  # 1: reference code, kept
        (  # 2: the exercise (its locals `y`, `z` are not names of the notebook)
            "def f(v):\n    # BEGIN SOLUTION\n    y = v + 1\n    return y\n    # END SOLUTION\n\nanswer = 2",
            ["solution"],
        ),
        ("checks.check('f', f)", []),  # 3: the check cell: cleared
        ("y = x * 2\nprint(y)", []),  # 4: a `y` of its own: kept
        ("r = f(x)\nprint(r.sum())", []),  # 5: uses f: cleared, and taints r
        ("print([r for r in range(3)], x)", []),  # 6: r is the comprehension's own: kept
        ("print(r)", []),  # 7: through r: cleared
        ("r = torch.zeros(2)\nprint(r)", []),  # 8: r bound again by reference code: kept
        ("print(r, answer)", []),  # 9: answer comes from the exercise cell: cleared
        ("def g(answer):\n    return answer + 1\nprint(g(1))", []),  # 10: answer is g's argument: kept
        ("checks.check('f', lambda v: v - 1)  # a deliberately wrong f, shown failing", []),  # 11: kept
        ("%%time\nf(x)", []),  # 12: a magic does not parse: every identifier counts, f among them
    )
    assert B.student_cleared_cells(nb) == [2, 3, 5, 7, 9, 12]
    snb = B.student_notebook(nb)
    assert [bool(c.outputs) for c in snb.cells] == [i not in (2, 3, 5, 7, 9, 12) for i in range(1, 13)]
    assert snb.cells[1].metadata["tags"] == ["exercise"] and "NotImplementedError" in snb.cells[1].source


def test_stub_source_hints_and_errors():
    src = "x = 1\n# BEGIN SOLUTION: use DDPM Eq. 4\ny = x + 1\n# END SOLUTION\nprint(y)"
    assert B._stub_source(src) == (
        'x = 1\n# YOUR CODE HERE\nraise NotImplementedError("exercise: use DDPM Eq. 4")\nprint(y)'
    )
    for bad, msg in [
        ("# BEGIN SOLUTION\nx = 1", "no `# END SOLUTION`"),
        ("x = 1\n# END SOLUTION", "without"),
        ("x = 1", "no `# BEGIN SOLUTION`"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "inside another"),
    ]:
        with pytest.raises(B.BookError, match=msg):
            B._stub_source(bad)


@pytest.mark.slow
def test_command_line_module(tiny):
    tiny.chapter("slider").ipynb_path.unlink()
    r = subprocess.run(
        [sys.executable, "-m", "ddpm_lib.course.book", "--book", str(tiny.root), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "FAIL chapter 02 slider (02_slider): 02_slider.ipynb is missing" in r.stdout


# ---- the real book --------------------------------------------------------------------------
REAL = B.load_book()
EXISTING = [c for c in REAL.chapters if c.ipynb_path.is_file()]


def test_real_book_check():
    """Every chapter of book.toml exists, is paired, its .py and .ipynb agree, outputs from a clean run."""
    assert len(EXISTING) == len(REAL.chapters) == 15
    problems = B.check_book(REAL)
    assert problems == [], "\n".join(map(str, problems))


def test_real_book_times_within_budget():
    ok, lines = B.book_times(REAL, out=open(os.devnull, "w"))
    assert ok, "\n".join(lines)


def test_real_book_student_edition(tmp_path):
    B.student_edition(REAL, tmp_path, ["start-here"], quiet=True)
    nb = read(tmp_path / "chapters" / "00_start-here.ipynb")
    src = "\n".join(c.source for c in nb.cells)
    assert 'raise NotImplementedError("exercise: implement alpha_bars_from_betas")' in src
    assert "torch.cumprod(alphas, dim=0)" not in src
    ref = read(REAL.chapter("start-here").ipynb_path)
    # cleared: each exercise cell and its check cell (the cell after it), nothing else
    sol = [i for i, c in enumerate(ref.cells, 1) if "solution" in c.metadata.get("tags", [])]
    cleared = B.student_cleared_cells(ref)
    assert len(sol) >= 2 and cleared == sorted(sol + [i + 1 for i in sol])
    assert len(nb.cells) == len(ref.cells)  # no solution-only cell in chapter 00
    for i, (c, r) in enumerate(zip(nb.cells, ref.cells), 1):
        if c.cell_type == "code":
            assert c.outputs == ([] if i in cleared else r.outputs), f"cell {i}"
    assert sum(bool(c.outputs) for c in code_cells(nb)) >= 6  # the map, the checks' demos, the figure, ...


@pytest.mark.parametrize("chapter", EXISTING, ids=[c.stem for c in EXISTING])
def test_stats_reads_the_cells_jupytext_reads(chapter):
    nb = B._read_py(chapter)
    light = B.percent_cells(chapter.py_path.read_text(encoding="utf-8"))
    assert [k for k, _, _ in light] == [c.cell_type for c in nb.cells]
    assert [t for _, _, t in light] == [c.metadata.get("tags", []) for c in nb.cells]
    for (kind, src, _), c in zip(light, nb.cells):
        if kind == "code":
            assert src.strip() == c.source.strip()
        else:  # the markdown keeps its "# " prefixes: the same words
            assert B._WORD_RE.findall(src) == B._WORD_RE.findall(c.source)


def test_glossary_terms_are_taught_where_it_says_and_render_as_a_table():
    from ddpm_lib.course import glossary

    assert glossary.missing(REAL) == [], "glossary terms not found in their chapters"
    lines = glossary.markdown(REAL).splitlines()
    assert len(lines) == len(glossary.TERMS) + 2
    assert all(
        len(re.findall(r"(?<!\\)\|", line)) == 4 for line in lines
    )  # 3 cells: bars in text are escaped
    assert "| SNR (signal-to-noise ratio) | SNR(t) = abar_t / (1 - abar_t)" in glossary.markdown(REAL)
    row = next(line for line in lines if line.startswith("| mu\\~_t"))
    assert row.endswith(f"| {REAL.chapter('posterior-and-kl').number:02d} |")


def test_real_book_prints_only_numbers_that_replay_on_any_cpu():
    """No stored output of any chapter prints a residual's digits, round-off or too many digits."""
    found = {c.stem: B.fragile_outputs(read(c.ipynb_path)) for c in EXISTING}
    found = {k: v for k, v in found.items() if v}
    assert not found, "\n".join(f"{k}: {line}" for k, v in found.items() for line in v)


# The replay as this CPU computes and as a CPU unlike it does (no SIMD in ATen, SSE in oneDNN and MKL, one
# thread): a green run can no longer mean "replayed on the machine that recorded it".
REPLAY_CPUS = ("native", "baseline-1thread")


@pytest.mark.slow
@pytest.mark.parametrize("cpu", REPLAY_CPUS)
@pytest.mark.parametrize("chapter", EXISTING, ids=[c.stem for c in EXISTING])
def test_real_book_chapter_replays_under_nbval(chapter, cpu):
    """pytest --nbval on the chapter: its stored outputs are what a clean run prints, on this CPU and as another."""
    r = B.replay_chapter(chapter, cpu)
    assert r.returncode == 0, f"as {cpu} ({B.SIMULATED_CPUS[cpu]}):\n" + r.stdout[-6000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_literal_nbval_command_picks_up_the_replay_settings(tmp_path):
    """`pytest --nbval chapters/` with no other flag: the root conftest.py sanitizes progress bars and runs the
    kernel of this Python in the book's execution environment."""
    shutil.copy(REPO / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "chapters").mkdir()
    shutil.copy(REAL.chapters_dir / "nbval_sanitize.cfg", tmp_path / "chapters" / "nbval_sanitize.cfg")
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, sys\n"
            "print('[00:03<00:01, 9.21it/s]' if os.environ.get('DDPM_COURSE_EXECUTING') == '1' "
            "else 'not the book env')\n"
            "print(os.environ.get('CUDA_VISIBLE_DEVICES') == '', sys.executable == %r)" % sys.executable
        )
    ]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[TIME]\nTrue True\n")]
    nb.cells[0].execution_count = 1
    write(nb, tmp_path / "chapters" / "probe.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in B.EXECUTION_ENV}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "chapters/"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
