"""The ``ddpm-book`` command line (``python -m ddpm_lib.course.book`` runs it too): it parses the
arguments, calls :mod:`ddpm_lib.course.book` (list, sync, execute, check, times, stats, replay,
student) or :mod:`ddpm_lib.course.site` (html) and maps their errors to exit codes. It lives apart
from ``book`` so that ``site``, which builds on ``book``, can have a command without the two
modules importing each other."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from . import book as book_module
from .book import (
    SIMULATED_CPUS,
    Book,
    BookError,
    BookUsageError,
    book_stats,
    book_times,
    check_book,
    execute_book,
    load_book,
    replay_chapters,
    student_edition,
    sync_book,
)
from .site import build_site

__all__ = ["main"]


def _print_list(book: Book) -> None:
    print(f"{book.title}  ({book.path})")
    print(f"{'#':>2}  {'id':<34} {'track':<9} {'budget':>6}  {'.py':<4}{'.ipynb':<7} title")
    for c in book.chapters:
        yn = lambda b: "yes" if b else "-"  # noqa: E731
        print(
            f"{c.number:02d}  {c.id:<34} {c.track:<9} {c.budget_s:>5g}s  {yn(c.py_exists):<4}{yn(c.ipynb_exists):<7} "
            f"{c.title}"
        )
    print(f"files: {book.chapters_dir}/<stem>.py and <stem>.ipynb")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli import examples, run

    parser = argparse.ArgumentParser(
        prog="ddpm-book",
        description="\n\n".join(book_module.__doc__.split("\n\n")[:5]),
        epilog=examples("ddpm-book list", "ddpm-book check", "ddpm-book student runs/student"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--book", help="book.toml or its folder (default: the repository's)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters of book.toml")
    p = sub.add_parser("sync", help="update the .ipynb inputs from the .py (keeps outputs and cell ids)")
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems")
    p.add_argument(
        "--canonical", action="store_true", help="also rewrite each .py in jupytext's canonical form"
    )
    p = sub.add_parser("execute", help="execute chapters on the CPU and store normalised outputs")
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems")
    p.add_argument("--all", action="store_true", help="every chapter that has files")
    p.add_argument("--timeout", type=float, help="seconds per chapter (default: 5x budget, at least 120)")
    p = sub.add_parser(
        "check", help="check that the .py and .ipynb agree and the outputs are from a clean run"
    )
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems")
    p.add_argument("--allow-missing", action="store_true", help="skip chapters that have no files yet")
    sub.add_parser("times", help="recorded execution times against the budgets")
    p = sub.add_parser("stats", help="words, code lines, longest cell, figures and reading time per chapter")
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems (default: all)")
    p = sub.add_parser("replay", help="pytest --nbval on the chapters, natively and as other CPUs compute")
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems (default: all)")
    p.add_argument(
        "--cpu",
        action="append",
        choices=list(SIMULATED_CPUS),
        help="replay as this CPU (repeatable; default: every one of " + ", ".join(SIMULATED_CPUS) + ")",
    )
    p = sub.add_parser("student", help="write the student edition (solutions replaced by stubs)")
    p.add_argument("outdir")
    p.add_argument("ids", nargs="*", help="chapter ids, numbers or stems")
    p = sub.add_parser(
        "html", help="build the static website of the executed chapters (offline, sliders included)"
    )
    p.add_argument("outdir", nargs="?", help="where (default: _build/html beside book.toml)")
    p.add_argument(
        "--no-frames", action="store_true", help="no scrubbers: each explorer shows its stored picture"
    )
    p.add_argument(
        "--only", nargs="+", metavar="ID", help="build only these chapters (ids, numbers or stems)"
    )
    args = parser.parse_args(argv)

    def body():
        book = load_book(args.book)
        if args.command == "list":
            _print_list(book)
            return 0
        if args.command == "sync":
            sync_book(book, args.ids, canonical=args.canonical)
            return 0
        if args.command == "execute":
            execute_book(book, args.ids, all_chapters=args.all, timeout=args.timeout)
            return 0
        if args.command == "check":
            problems = check_book(book, args.ids, allow_missing=args.allow_missing)
            for prob in problems:
                print(f"FAIL {prob}")
            n = len(book.select(args.ids))
            if problems:
                print(f"check: {len(problems)} problem(s)")
                return 1
            skipped = sum(1 for c in book.select(args.ids) if not (c.py_exists or c.ipynb_exists))
            print(
                f"check: OK ({n - skipped if args.allow_missing else n} chapter(s) checked"
                + (f", {skipped} without files skipped)" if args.allow_missing and skipped else ")")
            )
            return 0
        if args.command == "times":
            ok, _ = book_times(book)
            return 0 if ok else 1
        if args.command == "stats":
            book_stats(book, args.ids)
            return 0
        if args.command == "replay":
            failures = replay_chapters(book, args.ids or None, args.cpu or tuple(SIMULATED_CPUS))
            for cpu, label, output in failures:
                print(f"\nFAIL {label} as {cpu}:\n{output}")
            print(f"replay: {'OK' if not failures else f'{len(failures)} failure(s)'}")
            return 1 if failures else 0
        if args.command == "student":
            student_edition(book, args.outdir, args.ids)
            return 0
        if args.command == "html":
            build_site(book, args.outdir, args.only, frames=not args.no_frames)
            return 0
        return 2  # pragma: no cover

    return run(body, codes={BookUsageError: 2, BookError: 1})  # the exit codes of ddpm_lib.cli
