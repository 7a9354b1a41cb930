"""Every chapter that shows a widget, opened and run in a real browser: JupyterLab + Debian's Chromium
through Playwright (tests/browser_util.py), one test per track of book.toml.

For each chapter whose stored .ipynb displays an ``ExplorerBox`` (ddpm_lib.course.widgets), on a temporary copy
of the book: open it, run all cells, wait for the kernel to finish, then in every widget move every
slider to its end (or start) with the keyboard and choose another option of every dropdown, and see the
widget's picture change each time; time single steps of each widget's first slider, or of its dropdown's
options in a widget without sliders (key press to new image), and check that no cell shows a traceback and no
widget failed to display. The kernel gets 2 threads, as in the chapters' CPU budgets.
Skipped when /usr/bin/chromium (or playwright/jupyterlab) is missing.
"""

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import pytest

from browser_util import browser_unavailable_reason, chromium, jupyterlab
from ddpm_lib.course import book as B

REPO = Path(__file__).resolve().parents[1]
STEPS = 4  # timed key presses per widget
BUDGET_S = {"theory": 120, "practice": 240}  # whole test, server start to last check

pytestmark = pytest.mark.slow
_reason = browser_unavailable_reason()
if _reason:
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=f"no browser test: {_reason}")]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def explorer_count(path: Path) -> int:
    """How many ExplorerBox widgets a stored notebook displays (their text/plain says so)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    n = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if WIDGET_MIME in data and " widget; controls:" in text:
                n += 1
    return n


def widget_chapters(track: str) -> list:
    """The track's chapters that show widgets; BROWSER_CHAPTERS="09,12" (numbers or stems) narrows them
    down while one works on a chapter."""
    only = [x.strip() for x in os.environ.get("BROWSER_CHAPTERS", "").split(",") if x.strip()]
    return [
        (c, n)
        for c in B.load_book(REPO).chapters
        if c.track == track
        and c.ipynb_exists
        and (n := explorer_count(c.ipynb_path))
        and (
            not only
            or any(
                c.stem == x or c.stem.startswith(f"{int(x):02d}_") if x.isdigit() else c.stem == x
                for x in only
            )
        )
    ]


# In the page: time each key press inside a cell until that cell's widget image changes its src.
_INSTALL_TIMER = """([scope, cellIndex]) => {
  const cell = document.querySelectorAll(scope + ' .jp-CodeCell')[cellIndex];
  const img = cell.querySelector('img.widget-image');
  window.__lat = window.__lat || {};
  const rec = window.__lat[cellIndex] = {t0: null, times: [], changes: 0};
  cell.addEventListener('keydown', () => { rec.t0 = performance.now(); }, true);
  new MutationObserver(() => {
    rec.changes += 1;
    if (rec.t0 !== null) { rec.times.push(performance.now() - rec.t0); rec.t0 = null; }
  }).observe(img, {attributes: true, attributeFilter: ['src']});
  return img.getAttribute('src');
}"""

_KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext"


def _wait_kernel_idle(page, timeout_ms):
    page.wait_for_function(
        f"() => {{ const sc = {_KERNEL}; return sc.session && sc.session.kernel"
        f" && sc.session.kernel.status === 'idle'; }}",
        timeout=timeout_ms,
    )


def _wait_session_ready(page, timeout_ms):
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=timeout_ms,
    )
    page.evaluate(f"""async () => {{
        const sc = {_KERNEL};
        await sc.ready;
        const k = sc.session && sc.session.kernel;
        if (k) {{ await k.info; }}
    }}""")
    _wait_kernel_idle(page, timeout_ms)


def _run_all_and_wait(page, scope, n_cells_timeout_ms):
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # done when no code cell is queued or running ("[*]") and the kernel is idle
    page.wait_for_function(
        """(scope) => {
        const sc = window.jupyterapp.shell.currentWidget.sessionContext;
        if (!(sc.session && sc.session.kernel && sc.session.kernel.status === 'idle')) return false;
        const prompts = [...document.querySelectorAll(scope + ' .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
        return prompts.length > 0 && prompts.every(t => !t.includes('*')) && prompts.some(t => /\\d/.test(t));
    }""",
        arg=scope,
        timeout=n_cells_timeout_ms,
        polling=500,
    )


def _exercise_widgets(page, scope, stem, n_expected):
    cells = page.locator(f"{scope} .jp-CodeCell")
    widget_cells = [i for i in range(cells.count()) if cells.nth(i).locator("img.widget-image").count()]
    assert len(widget_cells) >= n_expected, (
        f"{stem}: {len(widget_cells)} widget pictures, expected {n_expected}"
    )
    latencies = []
    for ci in widget_cells:
        cell = cells.nth(ci)
        cell.scroll_into_view_if_needed()
        src = page.evaluate(_INSTALL_TIMER, [scope, ci])
        assert src, f"{stem}: widget image has no src"
        handles = cell.locator(".noUi-handle")
        selects = cell.locator(".widget-dropdown select")
        assert handles.count() + selects.count() >= 1, f"{stem}: a widget without a slider or a dropdown"

        def await_change(n, what):
            try:
                page.wait_for_function(f"() => window.__lat[{ci}].changes > {n}", timeout=20_000)
            except Exception as e:
                raise AssertionError(
                    f"{stem}: {what} of the widget in cell {ci} did not change its picture in 20 s"
                ) from e

        for h in range(handles.count()):
            handle = handles.nth(h)
            handle.focus()
            at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            for key in ("Home", "End") if at_end else ("End", "Home"):  # to the end, or the start if there
                n = page.evaluate(f"() => window.__lat[{ci}].changes")
                handle.press(key)
                try:
                    page.wait_for_function(f"() => window.__lat[{ci}].changes > {n}", timeout=20_000)
                    break
                except Exception:
                    continue
            else:
                raise AssertionError(
                    f"{stem}: moving slider {h} of the widget in cell {ci} did not change its picture"
                )
            new = cell.locator("img.widget-image").get_attribute("src")
            assert new != src, f"{stem}: slider {h} in cell {ci}: same picture after the move"
            src = new
        for d in range(selects.count()):
            select = selects.nth(d)
            options = select.locator("option").all_inner_texts()
            if len(options) < 2:
                continue
            current = select.evaluate("e => e.selectedIndex")
            n = page.evaluate(f"() => window.__lat[{ci}].changes")
            select.select_option(index=(current + 1) % len(options))
            await_change(n, f"choosing another option of dropdown {d}")
            new = cell.locator("img.widget-image").get_attribute("src")
            assert new != src, f"{stem}: dropdown {d} in cell {ci}: same picture after the choice"
            src = new
        # single steps of the first slider, each a new frame: key press -> image change; in a widget of
        # dropdowns, choices of the first dropdown's options (the choice made in the page, timed from there)
        page.evaluate(f"() => {{ window.__lat[{ci}].times = []; }}")
        if handles.count():
            first, label = handles.nth(0), cell.locator(".widget-slider").first.inner_text()
            first.focus()
            first.press("End")
            page.wait_for_timeout(300)
            page.evaluate(f"() => {{ window.__lat[{ci}].times = []; }}")
        for step in range(STEPS):
            n = page.evaluate(f"() => window.__lat[{ci}].changes")
            if handles.count():
                first.press("ArrowLeft")
            else:
                label = "the first dropdown"
                selects.first.evaluate(f"""e => {{
                    window.__lat[{ci}].t0 = performance.now();
                    e.selectedIndex = (e.selectedIndex + 1) % e.options.length;
                    e.dispatchEvent(new Event('change', {{bubbles: true}}));
                }}""")
            await_change(n, f"step {step + 1} of {label!r}")
        latencies.append(page.evaluate(f"() => window.__lat[{ci}].times"))
    return latencies


def _clear_outputs(path: Path) -> None:
    """Drop the stored outputs (a chapter stores dozens of pictures; rendering them on opening would
    cost the browser 10-20 s per chapter before anything runs)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_no_errors(page, scope, stem):
    tb = page.locator(f"{scope} .jp-OutputArea-output", has_text="Traceback")
    assert tb.count() == 0, f"{stem}: a cell shows a traceback:\n{tb.first.inner_text()[:2000]}"
    broken = page.locator(f"{scope} .jp-OutputArea-output", has_text="Error displaying widget")
    assert broken.count() == 0, f"{stem}: a widget failed to display"


@pytest.mark.parametrize("track", ["theory", "practice"])
def test_widget_chapters_in_jupyterlab(track, tmp_path):
    chapters = widget_chapters(track)
    if not chapters:
        pytest.skip(f"no {track} chapter shows a widget yet")
    t_start = time.monotonic()
    root = tmp_path / "book"
    shutil.copytree(REPO / "chapters", root / "chapters", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(REPO / "book.toml", root / "book.toml")
    for c, _ in chapters:  # open them as a reader of a fresh copy would: the run makes every output
        _clear_outputs(root / "chapters" / c.ipynb_path.name)
    report = []
    with jupyterlab(root, threads=2) as lab, chromium() as ctx:
        report.append(f"browser: JupyterLab and Chromium started in {time.monotonic() - t_start:.1f} s")
        # one page, one JupyterLab app: each chapter is opened in it, run, exercised and closed (a new
        # page per chapter would load and start the whole app again, 5-8 s each)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(lab.url("lab?reset"))  # ?reset: a fresh workspace
        page.wait_for_function("() => window.jupyterapp", timeout=90_000)
        page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")
        # one chapter at a time: opened, run, exercised, its kernel shut down and its tab closed. (Opening
        # the next chapter during this one's widget steps, or all at once, was tried: rendering a chapter
        # keeps the page's one thread busy, and both took longer on 2 cores.)
        open_js = """async (path) => {
            const w = await window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'});
            await w.context.ready;
            return w.id;
        }"""
        for c, n in chapters:
            phases = [time.monotonic()]
            wid = page.evaluate(open_js, f"chapters/{c.ipynb_path.name}")
            scope = f'[id="{wid}"]'  # this chapter's tab
            page.evaluate("(wid) => window.jupyterapp.shell.activateById(wid)", wid)
            page.wait_for_function("(wid) => window.jupyterapp.shell.currentWidget.id === wid", arg=wid)
            _wait_session_ready(page, 90_000)
            phases.append(time.monotonic())
            _run_all_and_wait(page, scope, int(max(120, 3 * c.budget_s) * 1000))
            phases.append(time.monotonic())
            lat = _exercise_widgets(page, scope, c.stem, n)
            _check_no_errors(page, scope, c.stem)
            phases.append(time.monotonic())
            page.evaluate("""async () => {
                const w = window.jupyterapp.shell.currentWidget;
                window.__shutdowns = (window.__shutdowns || []).concat([w.sessionContext.shutdown()]);
                w.context.model.dirty = false;  // run, not edited: close without the save dialog
                w.dispose();
            }""")
            page.wait_for_function("(scope) => !document.querySelector(scope)", arg=scope, timeout=30_000)
            phases.append(time.monotonic())
            report.append(
                f"browser: {c.stem}: "
                + ", ".join(
                    f"{name} {b - a:.1f} s"
                    for name, a, b in zip(("open", "run all", "widgets", "close"), phases, phases[1:])
                )
            )
            for i, times in enumerate(lat):
                med = statistics.median(times)
                report.append(
                    f"browser: {c.stem} widget {i + 1}: median {med:.0f} ms from key press to new image "
                    f"({', '.join(f'{x:.0f}' for x in times)})"
                )
                assert med < 1500, report[-1]
        page.evaluate("async () => { await Promise.all(window.__shutdowns || []); }")  # every kernel stopped
    elapsed = time.monotonic() - t_start
    print("\n".join(report))
    # a figure to report against the budget (issue 4: theory within 2 minutes), not an assertion: wall time
    # on a shared machine measures the machine
    print(
        f"browser test ({track}: {len(chapters)} chapters) took {elapsed:.1f} s (budget {BUDGET_S[track]} s)"
    )
