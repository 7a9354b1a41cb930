"""The static edition (ddpm_lib.course.site, ``ddpm-book html``) and the explorers' frames for it
(ddpm_lib.course.widgets.export): on a tiny fixture book (tests/fixtures/site_book: math, a long
output, a figure, an explorer of six frames), in-process and in Debian's Chromium; and the course
itself, built whole and opened page by page.

The fixture's notebooks were executed by
`python -m ddpm_lib.course.book --book tests/fixtures/site_book execute --all`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ddpm_lib.course import book as B
from ddpm_lib.course.commands import main
from ddpm_lib.course import site as S
from ddpm_lib.course.widgets import export as E

FIXTURE = Path(__file__).parent / "fixtures" / "site_book"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path):
    dst = tmp_path / "book"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.tmp", ".ipynb_checkpoints"))
    return B.load_book(dst)


# ---- the explorers' frames ------------------------------------------------------------------
def test_a_long_slider_is_thinned_keeping_its_ends_and_its_value():
    import ipywidgets as W

    spec = E.control_values(W.IntSlider(value=500, min=1, max=1000, description="t"), max_values=25)
    assert spec["kind"] == "range" and len(spec["values"]) == 25
    assert spec["values"][0] == 1 and spec["values"][-1] == 1000
    assert spec["values"][spec["index"]] == 500 and spec["labels"][spec["index"]] == "500"
    assert spec["values"] == sorted(set(spec["values"]))
    # a log slider's value between its steps is kept as the reader set it
    log = E.control_values(W.FloatLogSlider(value=0.02, base=10, min=-3, max=-1, step=0.5, description="b"))
    assert log["values"][log["index"]] == 0.02 and log["labels"][log["index"]] == "0.02"
    assert len(log["values"]) == 6 and log["values"] == sorted(log["values"])
    drop = E.control_values(W.Dropdown(options=[("linear", "lin"), ("cosine", "cos")], value="cos"))
    assert (drop["kind"], drop["values"], drop["labels"], drop["index"]) == (
        "select",
        ["lin", "cos"],
        ["linear", "cosine"],
        1,
    )
    with pytest.raises(TypeError, match="a Text has no frames to export"):
        E.control_values(W.Text(description="name"))


def test_the_grid_is_whole_within_max_frames_and_one_at_a_time_beyond():
    combos, subset = E._grid([3, 2], [0, 1], max_frames=10)
    assert len(combos) == 6 and subset == ""
    combos, subset = E._grid([4, 3, 5], [1, 0, 2], max_frames=12)
    # t (4) x schedule (3) in full; the third control's five values with the others at their start
    assert len(combos) == 12 + 4 and "one at a time" in subset
    assert {c for c in combos if c[2] != 2} == {(1, 0, k) for k in (0, 1, 3, 4)}


def _square_explorer(clamp: bool = False):
    import io

    import ipywidgets as W
    from PIL import Image

    from ddpm_lib.course.widgets.framework import explorer

    def draw(t, T):
        im = Image.new("RGB", (20, 20), (10 * t, 3 * T, 0))
        buf = io.BytesIO()
        im.save(buf, format="png")
        return buf.getvalue(), f"t = {t}, T = {T}"

    def follow(ex, name, value):  # like chapter 03's explorer: t stays within 1..T
        if clamp and name == "T":
            ex.controls["t"].max = value

    controls = {
        "t": W.IntSlider(value=2, min=1, max=4, description="t"),
        "T": W.Dropdown(options=[2, 4], value=4, description="T"),
    }
    return explorer("square_explorer", draw, controls, on_change=follow)


def test_export_draws_every_setting_and_names_what_the_controls_showed(tmp_path):
    box = _square_explorer(clamp=True)
    table = E.export_frames(box, tmp_path / "f")
    assert table["name"] == "square_explorer" and table["subset"] == ""
    assert [c["name"] for c in table["controls"]] == ["t", "T"]
    assert len(table["frames"]) == 8
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(
        [f"{k}.webp" for k in table["frames"]] + ["frames.json"]
    )
    assert table["frames"]["1_1"][1] == "t = 2, T = 4" and len(table["frames"]["1_1"]) == 2
    # t = 4 with T = 2: the slider stops at 2, the frame shows it and says so
    file, readout, shown = table["frames"]["3_0"]
    assert readout == "t = 2, T = 2" and shown == ["2", "2"]
    assert box.explorer.values() == {"t": 2, "T": 4}  # the widget is left as it was
    assert json.loads((tmp_path / "f" / "frames.json").read_text()) == table


def test_a_displayed_explorer_writes_its_frames_only_when_asked(tmp_path, monkeypatch):
    box = _square_explorer()
    monkeypatch.setattr(E, "_COUNT", 0)
    monkeypatch.delenv(E.FRAMES_ENV, raising=False)
    box._repr_mimebundle_()
    assert not any(tmp_path.iterdir())
    monkeypatch.setenv(E.FRAMES_ENV, str(tmp_path))
    box._repr_mimebundle_()
    box._repr_mimebundle_()  # shown twice: one export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explorer-1"]
    assert len(json.loads((tmp_path / "explorer-1" / "frames.json").read_text())["frames"]) == 8


# ---- the site -------------------------------------------------------------------------------
def test_the_site_has_a_page_per_chapter_offline_with_links_and_a_search_index(tiny, tmp_path):
    out = tmp_path / "site"
    report = S.build_site(tiny, out, frames=False, quiet=True)
    assert report.pages == ["index.html", "00_math.html", "01_explorer.html"]
    for page in report.pages:
        text = (out / page).read_text()
        # nothing is loaded from a network: no src or stylesheet with a scheme
        assert not re.findall(r'(?:src|href)="(?:https?:)?//[^"]*\.(?:js|css|woff2?)', text), page
        assert "cdn" not in " ".join(re.findall(r'src="[^"]*"', text)).lower()
    chapter = (out / "00_math.html").read_text()
    assert "_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full" in chapter
    assert 'href="01_explorer.html"' in chapter  # the link to the next chapter's notebook, rewritten
    assert (
        re.search(r'<a href="01_explorer.html" rel="next"', chapter)
        and 'href="chapters/00_math.ipynb"' in chapter
    )
    assert 'href="student/chapters/00_math.ipynb"' in chapter
    assert "40 lines of output" in chapter and "<details" in chapter  # folded
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    assert not (
        out / "_static" / "mathjax" / "extensions" / "a11y"
    ).exists()  # loaded from the menu only: off
    for f in ("chapters/00_math.ipynb", "chapters/00_math.py", "student/chapters/01_explorer.ipynb"):
        assert (out / f).is_file(), f
    index = (out / "_static" / "search_index.js").read_text()
    entries = json.loads(index[index.index("=") + 1 : index.rindex(";")])
    titles = {e["title"]: e for e in entries}
    assert titles["A displayed equation"]["url"].startswith("00_math.html#")
    home = (out / "index.html").read_text()
    assert "The course map" in home and "Math, a long output and a figure" in home
    assert re.search(r"\d+ min</td>", home)
    # without frames, the explorer shows the picture stored in the notebook
    assert report.scrubbers == [] and "ddpm-scrubber" not in (out / "01_explorer.html").read_text()


def test_the_site_replaces_only_a_site_it_built(tiny, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(B.BookUsageError, match="holds files that this command did not write"):
        S.build_site(tiny, out, frames=False, quiet=True)
    assert (out / "notes.txt").read_text() == "keep me"
    site = tmp_path / "site"
    S.build_site(tiny, site, ["math"], frames=False, quiet=True)
    (site / "stale.html").write_text("from before")
    report = S.build_site(tiny, site, ["math"], frames=False, quiet=True)
    assert not (site / "stale.html").exists() and report.pages == ["index.html", "00_math.html"]


def test_the_command_line_builds_the_site(tiny, tmp_path, capsys):
    rc = main(["--book", str(tiny.path), "html", str(tmp_path / "s"), "--only", "0", "--no-frames"])
    assert rc == 0 and (tmp_path / "s" / "00_math.html").is_file()
    assert "built 2 pages" in capsys.readouterr().out
    rc = main(["--book", str(tiny.path), "html", str(tmp_path / "s"), "--only", "nope"])
    assert rc == 2


@pytest.mark.slow
def test_explorers_become_scrubbers_whose_frames_are_cached(tiny, tmp_path):
    out = tmp_path / "site"
    report = S.build_site(tiny, out, quiet=True)
    assert report.scrubbers == [("01_explorer", "square_explorer", 6)]
    page = (out / "01_explorer.html").read_text()
    assert 'data-explorer="01_explorer-1"' in page
    assert '<script src="frames/01_explorer/explorer-1/frames.js"></script>' in page
    frames = out / "frames" / "01_explorer" / "explorer-1"
    assert len(list(frames.glob("*.webp"))) == 6
    cached = list((tmp_path / "frames" / "01_explorer").iterdir())
    assert len(cached) == 1 and (cached[0] / "complete.json").is_file()
    # a second build draws nothing: the cache's files are not touched
    stamp = (cached[0] / "explorer-1" / "frames.json").stat().st_mtime_ns
    again = S.build_site(tiny, out, quiet=True)
    assert again.scrubbers == report.scrubbers
    assert (cached[0] / "explorer-1" / "frames.json").stat().st_mtime_ns == stamp


# ---- in a real browser ----------------------------------------------------------------------
def _browser_or_skip():
    from browser_util import browser_unavailable_reason

    why = browser_unavailable_reason()
    if why:
        pytest.skip(why)


def _open_site(out: Path, pages, *, scrub: bool, math: bool = True):
    """Open each page from file://; returns (requests leaving the machine, failed loads, broken
    internal links, [(page, MathJax elements, raw $$ left)]) and scrubs every scrubber when asked."""
    from browser_util import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    external, failed, broken, maths = [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})

        def on_request(r):
            if not r.url.startswith(("file:", "data:", "about:")):
                external.append(r.url)

        page.on("request", on_request)
        page.on("requestfailed", lambda r: None if r.url.startswith("about:") else failed.append(r.url))
        for name in pages:
            page.goto((out / name).as_uri())
            page.wait_for_load_state("load")
            if math and name != "index.html":
                page.wait_for_function(
                    "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                    " && MathJax.Hub.queue.running === 0",
                    timeout=240_000,
                )
                maths.append(
                    (
                        name,
                        page.locator(".MathJax, .MathJax_Display").count(),
                        page.evaluate("() => document.querySelector('main').innerText.includes('$$')"),
                    )
                )
            for href in page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)"):
                if href.startswith("file:"):
                    target = Path(href.split("#")[0].split("?")[0][len("file://") :])
                    if not target.exists():
                        broken.append((name, href))
            if scrub:
                scrubbers = page.locator(".ddpm-scrubber")
                page.wait_for_function(
                    "n => document.querySelectorAll('.ddpm-scrubber[data-ready=\"1\"]').length === n",
                    arg=scrubbers.count(),
                )
                for k in range(scrubbers.count()):
                    s = scrubbers.nth(k)
                    s.scroll_into_view_if_needed()
                    for control in s.locator("input[type=range], select").all():
                        if (
                            control.evaluate(
                                "e => e.tagName === 'SELECT' ? e.options.length : Number(e.max) + 1"
                            )
                            < 2
                        ):
                            continue  # a control with one value (one seed in a table) has nothing to move
                        before = (
                            s.locator("img.ddpm-frame").get_attribute("src"),
                            s.locator(".ddpm-readout").inner_html(),
                        )
                        if control.evaluate("e => e.tagName") == "SELECT":
                            n = control.locator("option").count()
                            current = int(control.input_value())
                            control.select_option(str((current + 1) % n))
                        else:
                            control.focus()
                            key = (
                                "ArrowLeft"
                                if control.input_value() == control.get_attribute("max")
                                else "ArrowRight"
                            )
                            page.keyboard.press(key)
                        after = (
                            s.locator("img.ddpm-frame").get_attribute("src"),
                            s.locator(".ddpm-readout").inner_html(),
                        )
                        assert after[0] != before[0], (name, k, control.get_attribute("data-control"))
                        loaded = s.locator("img.ddpm-frame").evaluate("i => i.complete && i.naturalWidth > 0")
                        assert loaded, (name, k, after[0])
        browser.close()
    return external, failed, broken, maths


@pytest.mark.slow
def test_the_fixture_site_works_offline_in_a_browser_and_its_scrubber_moves(tiny, tmp_path):
    _browser_or_skip()
    out = tmp_path / "site"
    report = S.build_site(tiny, out, quiet=True)
    external, failed, broken, maths = _open_site(out, report.pages, scrub=True)
    assert external == [] and failed == [] and broken == []
    assert all(n > 0 and not raw for _, n, raw in maths), maths


@pytest.mark.slow
def test_the_course_builds_into_a_site_that_works_offline(tmp_path):
    """The real book, whole (about 4 minutes on 2 quiet cores: 3 to run the chapters up to their last
    explorer and draw the frames, 1 in the browser): every page from file:// with no request leaving the
    machine, no broken link, the math rendered on every page, and every scrubber moving."""
    _browser_or_skip()
    book = B.load_book(REPO)
    out = tmp_path / "site"
    report = S.build_site(book, out, quiet=True)
    assert len(report.pages) == len(book.chapters) + 1 and len(report.scrubbers) >= 8
    print(
        report.summary()
    )  # build time, size, largest page, scrubbers and frames: in the CI log with -rA / -s
    assert report.largest_page[1] < 10e6 and report.total_bytes < 100e6, (
        report.summary()
    )  # a reader's download
    external, failed, broken, maths = _open_site(out, report.pages, scrub=True)
    assert external == [] and failed == [] and broken == []
    assert all(n > 0 and not raw for _, n, raw in maths), maths
