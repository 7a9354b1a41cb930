"""The static edition: a website of every executed chapter that works offline, sliders included.

    ddpm-book html [OUTDIR]          # default _build/html; open OUTDIR/index.html in a browser

Each chapter page is the stored notebook (its code and outputs, as executed by ``ddpm-book execute``)
turned into HTML by nbconvert with the course's template (``site_assets/templates/course``, on top
of nbconvert's JupyterLab look): MathJax from the site's own copy (the ``jupyter-server-mathjax``
package's MathJax 2.7), no require.js and no widget manager, so no page asks a network for
anything. Long printed outputs fold away; figures keep their size. A home page carries the course
map (each chapter's opening line, reading time by ``ddpm-book stats``'s rule, and CPU time), a
sidebar lists the chapters with a search box (a small index of every section,
``_static/search_index.js``), and each page links its .ipynb, its .py and the student edition,
and says how to run it.

The explorers (:mod:`ddpm_lib.course.widgets`) need a kernel for their callbacks; on the site each
becomes a *scrubber*: range inputs and selects over the same controls that swap pre-rendered frames
and the readout in plain JavaScript (``_static/site.js``). The frames come from running the chapter
up to its last explorer with ``$DDPM_SITE_FRAMES`` set, so that each displayed explorer writes its
frames (:mod:`ddpm_lib.course.widgets.export`); they are kept in ``_build/frames/<stem>/<hash>`` keyed
by the chapter's code and the library's version, so a rebuild of unchanged chapters draws nothing.

Why nbconvert and not a book generator: Jupyter Book 1 builds offline, but its pages load
MathJax 3 and the widget manager from a CDN, and a scrubber would need a Sphinx extension; Jupyter
Book 2 and mystmd fetch a theme at build time (../shared/TOOLING-NOTES.md). nbconvert, already
installed with JupyterLab, renders a notebook exactly as JupyterLab shows it, and a template of
about fifty lines does the rest.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

from .book import (
    KERNEL_NAME,
    Book,
    BookError,
    BookUsageError,
    Chapter,
    code_hash,
    chapter_stats,
    read_ipynb,
    kernel_env,
    read_timings,
    student_edition,
)

__all__ = ["SiteReport", "build_site", "explorer_cells", "DEFAULT_OUT"]

DEFAULT_OUT = Path("_build") / "html"
ASSETS = Path(__file__).with_name("site_assets")
MARKER = ".ddpm-site"  # a folder holding it is a site this module built: safe to replace
FOLD_LINES = 30  # printed outputs longer than this many lines fold away
#: MathJax 2.7's parts the pages use (the rest of jupyter-server-mathjax's 10 MB stays out)
MATHJAX_PARTS = (
    "MathJax.js",
    "config",
    "extensions",
    "jax/input/TeX",
    "jax/element",
    "jax/output/HTML-CSS",
    "fonts/HTML-CSS/STIX-Web/woff",
)
#: left out of the copy: the accessibility explorer (3.7 of the 4.1 MB of extensions/), which MathJax loads
#: only from its menu, and the pages turn the menu off
MATHJAX_SKIP = ("a11y",)
EXPLORER_TEXT = re.compile(r"^<(\w+) widget; controls: [^>]*>$")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class SiteReport:
    """What a build made: the folder, seconds, pages, bytes, the largest page and the scrubbers."""

    out: Path
    seconds: float = 0.0
    pages: list = field(default_factory=list)
    total_bytes: int = 0
    largest_page: tuple = ("", 0)
    scrubbers: list = field(default_factory=list)  # (chapter stem, explorer name, frames)

    def summary(self) -> str:
        frames = sum(n for _, _, n in self.scrubbers)
        return (
            f"built {len(self.pages)} pages in {self.out} in {self.seconds:.1f} s: "
            f"{self.total_bytes / 1e6:.1f} MB in all, largest page {self.largest_page[0]} "
            f"({self.largest_page[1] / 1e6:.2f} MB with its frames), {len(self.scrubbers)} scrubbers "
            f"with {frames} frames"
        )


# ---------------------------------------------------------------------------------------------
# reading the stored notebooks
# ---------------------------------------------------------------------------------------------
def explorer_cells(nb) -> list:
    """``(cell index, output index, explorer name)`` of every explorer a stored notebook displays,
    in order (an explorer's display has its name in ``text/plain`` beside a widget view)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            m = EXPLORER_TEXT.match(text.strip())
            if m and WIDGET_VIEW in data:
                found.append((i, j, m.group(1)))
    return found


def _opening(nb) -> str:
    """The first paragraph of prose after the chapter's title: its one-line goal on the home page."""
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        for para in re.split(r"\n\s*\n", c.source):
            p = para.strip()
            if p and not p.startswith("#") and not p.startswith(">") and not p.startswith("|"):
                return " ".join(p.split())
    return ""


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------
def _frames_key(nb) -> str:
    from .. import __version__
    from .widgets import export

    h = hashlib.sha256()
    h.update(code_hash(nb).encode())
    h.update(__version__.encode())
    h.update(Path(export.__file__).read_bytes())
    return h.hexdigest()[:16]


def chapter_frames(chapter: Chapter, nb, cache: Path, *, quiet: bool = False) -> list:
    """The frame folders of ``chapter``'s explorers, in display order (from the cache, or drawn by
    running the chapter up to its last explorer with ``$DDPM_SITE_FRAMES`` set)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from .widgets.export import FRAMES_ENV

    found = explorer_cells(nb)
    if not found:
        return []
    folder = cache / chapter.stem / _frames_key(nb)
    done = folder / "complete.json"
    if not done.is_file():
        if not quiet:
            print(f"{chapter.label}: drawing the frames of {len(found)} explorer(s) ...", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="frames-", dir=folder.parent))
        run = nb.copy()
        run.cells = [c.copy() for c in nb.cells[: found[-1][0] + 1]]
        client = NotebookClient(
            run,
            kernel_name=KERNEL_NAME,
            timeout=int(max(600, 10 * chapter.budget_s)),
            allow_errors=False,
            resources={"metadata": {"path": str(chapter.chapters_dir)}},
        )
        try:
            client.execute(env=kernel_env({FRAMES_ENV: str(tmp)}))
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BookError(f"chapter {chapter.label}: drawing its explorers' frames failed\n{e}") from None
        names = []
        for k in range(1, len(found) + 1):
            table = tmp / f"explorer-{k}" / "frames.json"
            names.append(json.loads(table.read_text())["name"] if table.is_file() else None)
        if names != [n for _, _, n in found]:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BookError(
                f"chapter {chapter.label}: the stored notebook displays explorers {[n for _, _, n in found]}, "
                f"a run displayed {names}: execute the chapter again (ddpm-book execute {chapter.id})"
            )
        (tmp / "complete.json").write_text(json.dumps({"explorers": names}))
        os.replace(tmp, folder)
    return [folder / f"explorer-{k}" for k in range(1, len(found) + 1)]


# ---------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------
def _page_name(c: Chapter) -> str:
    return f"{c.stem}.html"


def _sidebar(book: Book, chapters: list, current: Optional[Chapter], root: str) -> str:
    parts = [
        '<nav class="ddpm-side" aria-label="chapters">',
        f'<a class="ddpm-home" href="{root}index.html">{html.escape(book.title)}</a>',
        '<div class="ddpm-search"><input id="ddpm-search" type="search" placeholder="Search the course"'
        ' aria-label="search the course"></div><ol id="ddpm-results" class="ddpm-results"></ol>',
    ]
    track = None
    for c in chapters:
        if c.track != track:
            if track is not None:
                parts.append("</ol>")
            track = c.track
            parts.append(f'<div class="ddpm-track">{html.escape(track or "chapters")}</div><ol>')
        cls = ' class="current"' if current is not None and c.id == current.id else ""
        parts.append(
            f'<li{cls}><a href="{root}{_page_name(c)}">{c.number:02d} {html.escape(c.title)}</a></li>'
        )
    parts.append("</ol></nav>")
    return "\n".join(parts)


def _bar(prev: Optional[Chapter], nxt: Optional[Chapter], root: str, where: str) -> str:
    left = (
        f'<a rel="prev" href="{root}{_page_name(prev)}">&larr; {prev.number:02d} {html.escape(prev.title)}</a>'
        if prev
        else f'<a href="{root}index.html">&larr; Home</a>'
    )
    right = (
        f'<a rel="next" href="{root}{_page_name(nxt)}">{nxt.number:02d} {html.escape(nxt.title)} &rarr;</a>'
        if nxt
        else f'<a href="{root}index.html">Home &rarr;</a>'
    )
    return f'<div class="ddpm-bar {where}"><span>{left}</span><span>{right}</span></div>'


def _run_box(c: Chapter, minutes: int, cpu: Optional[float]) -> str:
    cpu_text = f"{cpu:.0f} s" if cpu is not None else "not measured"
    return (
        '<div class="ddpm-run">'
        f"Reading time about {minutes} min; the code runs in {cpu_text} on a 2-core CPU. "
        f'This page is the executed notebook: <a href="chapters/{c.stem}.ipynb">{c.stem}.ipynb</a> '
        f'(its source <a href="chapters/{c.stem}.py">{c.stem}.py</a>; the '
        f'<a href="student/chapters/{c.stem}.ipynb">student edition</a> leaves the exercises to you). '
        'To run it: <code>pip install -e ".[dev]"</code> in a clone of the course, then '
        "<code>jupyter lab chapters/</code> (the README's Set up). The sliders below show pictures drawn in advance; "
        "in JupyterLab they draw live.</div>"
    )


def _scrubber_html(key: str, table: dict, base: str, first_png_b64: str) -> str:
    note = f"Frames drawn in advance: {len(table['frames'])} settings"
    if table.get("subset"):
        note += f" ({table['subset']})"
    return (
        f'<div class="ddpm-scrubber" data-explorer="{key}" data-base="{base}">'
        f'<div class="ddpm-controls"></div><div class="ddpm-readout"></div>'
        f'<img class="ddpm-frame" alt="{html.escape(table["name"])}" src="data:image/png;base64,{first_png_b64}">'
        f'<div class="ddpm-note"></div><div class="ddpm-note">{html.escape(note)}.</div></div>'
    )


def _prepare(nb, c: Chapter, frame_dirs: list, out: Path, report: SiteReport) -> tuple:
    """A copy of ``nb`` for nbconvert: explorers replaced by scrubbers (their frames copied to
    ``out/frames/<stem>/explorer-k``), other widget views dropped for their picture or text."""
    nb = nb.copy()
    nb.cells = [cell.copy() for cell in nb.cells]
    nb.metadata = {k: v for k, v in nb.metadata.items() if k != "widgets"}
    scripts = []
    found = {(i, j): k for k, (i, j, _) in enumerate(explorer_cells(nb))}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs = []
        for j, o in enumerate(cell.get("outputs", [])):
            o = o.copy()
            if "data" in o:
                o["data"] = {k: v for k, v in o["data"].items() if k != WIDGET_VIEW}
                if not o["data"]:
                    continue
            k = found.get((i, j))
            if k is not None and k < len(frame_dirs):
                src = frame_dirs[k]
                dest = out / "frames" / c.stem / f"explorer-{k + 1}"
                shutil.copytree(src, dest, dirs_exist_ok=True)
                table = json.loads((src / "frames.json").read_text())
                key = f"{c.stem}-{k + 1}"
                (dest / "frames.js").write_text(
                    "window.DDPM_FRAMES = window.DDPM_FRAMES || {};\n"
                    f"window.DDPM_FRAMES[{json.dumps(key)}] = {json.dumps(table)};\n",
                    encoding="utf-8",
                )
                (dest / "frames.json").unlink()
                scripts.append(f'<script src="frames/{c.stem}/explorer-{k + 1}/frames.js"></script>')
                png = o["data"].get("image/png", "")
                png = "".join(png) if isinstance(png, list) else png
                html_text = _scrubber_html(key, table, f"frames/{c.stem}/explorer-{k + 1}/", png.strip())
                o = {"output_type": "display_data", "metadata": {}, "data": {"text/html": html_text}}
                report.scrubbers.append((c.stem, table["name"], len(table["frames"])))
            outputs.append(o)
        cell["outputs"] = outputs
    return nb, "\n".join(scripts)


def _link_pages(body: str, stems: set) -> str:
    """Links between chapters name their notebooks (``03_forward-closed-form.ipynb#...``): on the site
    they go to the pages."""

    def page(m):
        stem = m.group(2)
        return f'{m.group(1)}{stem}.html{m.group(3) or ""}"' if stem in stems else m.group(0)

    return re.sub(r'(href=")(?:\./)?([0-9]{2}_[A-Za-z0-9_-]+)\.ipynb(#[^"]*)?"', page, body)


class _Sections(HTMLParser):
    """Headings (h1-h3, with their id) and the text under each, for the search index."""

    def __init__(self):
        super().__init__()
        self.sections, self._heading, self._skip = [], None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("h1", "h2", "h3") and a.get("id"):
            self._heading = [a["id"], ""]
            self.sections.append({"id": a["id"], "title": "", "text": ""})

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.sections[-1]["title"] = " ".join(self._heading[1].replace("¶", "").split())
            self._heading = None

    def handle_data(self, data):
        if self._skip or not self.sections:
            return
        if self._heading is not None:
            self._heading[1] += data
        elif len(self.sections[-1]["text"]) < 4000:
            self.sections[-1]["text"] += " " + " ".join(data.split())


def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="course",
        extra_template_basedirs=[str(ASSETS / "templates")],
        exclude_anchor_links=False,
    )


def _copy_mathjax(dest: Path) -> None:
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise BookError(
            "the static edition needs MathJax from the package jupyter-server-mathjax: "
            'pip install -e ".[dev]" (or pip install jupyter-server-mathjax)'
        ) from None
    src = Path(jupyter_server_mathjax.__file__).with_name("static")
    for part in MATHJAX_PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dest / part, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*MATHJAX_SKIP))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, dest / part)


def _home(book: Book, chapters: list, rows: list) -> str:
    first = chapters[0] if chapters else None
    papers = "".join(f"<li>{html.escape(p)}</li>" for p in book.raw.get("book", {}).get("papers", []))
    body = [
        f"<h1>{html.escape(book.title)}</h1>",
        "<p>An interactive course that derives diffusion models from first principles, runs every "
        "equation and checks it by a number, on a laptop CPU. These pages are the executed chapters; "
        "the sliders show pictures drawn in advance. To run the chapters yourself: clone the course, "
        '<code>pip install -e ".[dev]"</code>, then <code>jupyter lab chapters/</code> (the README\'s '
        "Set up gives the details, and the <code>student</code> edition leaves the exercises to you).</p>",
        f"<p>The papers:</p><ul>{papers}</ul>" if papers else "",
        "<h2>The course map</h2>",
        "<table><thead><tr><th>Chapter</th><th>What it teaches</th><th>Reading</th><th>CPU</th></tr></thead><tbody>",
    ]
    for c, minutes, cpu, opening in rows:
        cpu_text = f"{cpu:.0f} s" if cpu is not None else "&ndash;"
        body.append(
            f'<tr><td><a href="{_page_name(c)}">{c.number:02d} {html.escape(c.title)}</a></td>'
            f"<td>{html.escape(opening[:260] + ('…' if len(opening) > 260 else ''))}</td>"
            f'<td class="num">{minutes} min</td><td class="num">{cpu_text}</td></tr>'
        )
    body.append("</tbody></table>")
    reading = sum(r[1] for r in rows)
    cpu_all = sum(r[2] for r in rows if r[2] is not None)
    body.append(
        f"<p>In all: about {reading // 60} h {reading % 60} min of reading, and {cpu_all / 60:.0f} min "
        "of CPU time to execute every chapter on a 2-core laptop.</p>"
    )
    start = (
        f'<a rel="next" href="{_page_name(first)}">Start: {first.number:02d} {html.escape(first.title)} &rarr;</a>'
        if first
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">'
        f"<title>{html.escape(book.title)}</title>"
        '<link rel="stylesheet" href="_static/site.css">'
        '<script src="_static/search_index.js"></script><script src="_static/site.js" defer></script>'
        '</head><body class="ddpm-page">'
        + _sidebar(book, chapters, None, "")
        + '<main class="ddpm-main ddpm-home-page">'
        + "\n".join(body)
        + f'<div class="ddpm-bar bottom"><span></span><span>{start}</span></div></main></body></html>\n'
    )


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise BookUsageError(f"{out} is a file: give a folder for the site")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise BookUsageError(
                f"{out} holds files that this command did not write: give an empty or new folder "
                "(it replaces only a site it built)"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("built by ddpm-book html; replaced by the next build\n")


def build_site(book: Book, out=None, keys=None, *, frames: bool = True, quiet: bool = False) -> SiteReport:
    """Build the static edition of ``book`` into ``out`` (default ``<book root>/_build/html``).

    :param keys: the chapters to build (ids, numbers or stems; default: all): the site then holds
        only these.
    :param frames: draw (or take from the cache) the explorers' frames; without, each explorer shows
        the picture stored in the notebook.
    :raises BookUsageError: ``out`` holds files this command did not write.
    :raises BookError: a chapter has no executed notebook, or drawing its frames failed.
    """
    start = time.monotonic()
    out = Path(out) if out is not None else book.root / DEFAULT_OUT
    out = out.resolve()
    cache = out.parent / "frames"
    selected = book.select(keys)
    chapters = [c for c in selected if c.ipynb_exists]
    missing = [c.label for c in selected if not c.ipynb_exists]
    if missing:
        raise BookError(
            f"no executed notebook for chapter(s) {', '.join(missing)}: ddpm-book execute them first"
        )
    _prepare_out(out)
    report = SiteReport(out=out)
    static = out / "_static"
    static.mkdir()
    for name in ("site.css", "site.js"):
        shutil.copyfile(ASSETS / name, static / name)
    _copy_mathjax(static / "mathjax")
    (out / "chapters").mkdir()
    timings = read_timings(book)
    exporter = _exporter()
    search, rows = [], []
    for n, c in enumerate(chapters):
        nb = read_ipynb(c.ipynb_path)
        frame_dirs = chapter_frames(c, nb, cache, quiet=quiet) if frames else []
        page_nb, scripts = _prepare(nb, c, frame_dirs, out, report)
        minutes = round(chapter_stats(c, timings).reading_minutes)  # the rule of ddpm-book stats
        cpu = timings.get(c.id, {}).get("seconds")
        rows.append((c, minutes, cpu, _opening(nb)))
        prev = chapters[n - 1] if n else None
        nxt = chapters[n + 1] if n + 1 < len(chapters) else None
        resources = {
            "metadata": {"name": f"{c.number:02d} {c.title}"},
            "ddpm": {
                "root": "",
                "sidebar": _sidebar(book, chapters, c, ""),
                "topbar": _bar(prev, nxt, "", "top") + _run_box(c, minutes, cpu),
                "bottombar": _bar(prev, nxt, "", "bottom") + scripts,
                "fold_lines": FOLD_LINES,
            },
        }
        body, _ = exporter.from_notebook_node(page_nb, resources=resources)
        body = _link_pages(body, {ch.stem for ch in chapters})
        (out / _page_name(c)).write_text(body, encoding="utf-8")
        parser = _Sections()
        parser.feed(body)
        for s in parser.sections:
            search.append(
                {
                    "chapter": f"{c.number:02d} {c.title}",
                    "title": s["title"],
                    "url": f"{_page_name(c)}#{s['id']}",
                    "text": s["text"][:2000],
                }
            )
        shutil.copyfile(c.ipynb_path, out / "chapters" / c.ipynb_path.name)
        if c.py_exists:
            shutil.copyfile(c.py_path, out / "chapters" / c.py_path.name)
        report.pages.append(_page_name(c))
        if not quiet:
            print(f"{c.label}: {_page_name(c)}", flush=True)
    (static / "search_index.js").write_text(
        "window.DDPM_SEARCH = " + json.dumps(search, ensure_ascii=False) + ";\n", encoding="utf-8"
    )
    (out / "index.html").write_text(_home(book, chapters, rows), encoding="utf-8")
    report.pages.insert(0, "index.html")
    student_edition(book, out / "student", [c.id for c in chapters], quiet=True)
    report.total_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    for page in report.pages:
        size = (out / page).stat().st_size
        stem = page[: -len(".html")]
        fdir = out / "frames" / stem
        if fdir.is_dir():
            size += sum(p.stat().st_size for p in fdir.rglob("*") if p.is_file())
        if size > report.largest_page[1]:
            report.largest_page = (page, size)
    report.seconds = time.monotonic() - start
    if not quiet:
        print(report.summary())
    return report
