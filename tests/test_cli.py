"""The console scripts of pyproject.toml and the ``python -m ddpm_lib.<module>`` forms that the
course documents: every one resolves, ends its --help with examples that parse, and exits with
the codes of ddpm_lib.cli (0 success, 1 a failure while working, 2 a usage error), reporting an
error as one ``error:`` line without a traceback.

In-process through each script's ``main(argv)`` (what the console script calls), except the
``python -m`` forms, which run in a fresh interpreter as a user would run them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# python -m forms stored as provenance (data/registry.json, checkpoints, chapters, README) -> the script they run
MODULES = {
    "ddpm_lib.train": "ddpm-train",
    "ddpm_lib.sample": "ddpm-sample",
    "ddpm_lib.evaluate": "ddpm-evaluate",
    "ddpm_lib.pretrained": "ddpm-pretrained",
    "ddpm_lib.data": "ddpm-data",
    "ddpm_lib.cifar": "ddpm-data",  # ddpm-data cifar10
    "ddpm_lib.classifier": "ddpm-classifier",
    "ddpm_lib.ablations": "ddpm-ablations",
    "ddpm_lib.course.book": "ddpm-book",
}


def entry_point(script: str):
    module, _, attr = SCRIPTS[script].partition(":")
    return getattr(importlib.import_module(module), attr)


def call(script: str, argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the console script ``script`` with arguments ``argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = entry_point(script)([str(a) for a in argv])
        except SystemExit as e:  # argparse: --help, a bad flag
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_one_error_line(err: str) -> None:
    lines = err.strip("\n").splitlines()
    assert "Traceback" not in err, err
    assert lines and lines[0].startswith("error: "), err
    assert all(s[:1].isspace() for s in lines[1:]), f"one error line, its message continued indented:\n{err}"


def test_every_command_line_is_a_console_script():
    assert set(SCRIPTS) == {
        "ddpm-train",
        "ddpm-sample",
        "ddpm-evaluate",
        "ddpm-pretrained",
        "ddpm-data",
        "ddpm-classifier",
        "ddpm-ablations",
        "ddpm-book",
    }
    assert set(MODULES.values()) == set(SCRIPTS)
    for script in SCRIPTS:
        assert callable(entry_point(script)), script
        if script != "ddpm-book":  # the course's tool sits above the command lines
            assert SCRIPTS[script] == f"ddpm_lib.cli.{script.removeprefix('ddpm-')}:main"


def help_examples(text: str, prog: str) -> list[str]:
    block = text.rstrip().split("\n\n")[-1].splitlines()
    assert block[0] == "examples:", f"--help of {prog} does not end with examples:\n{text}"
    lines = [s.strip() for s in block[1:]]
    assert 1 <= len(lines) <= 3 and all(s.startswith(("ddpm-", "cp ")) for s in lines), lines
    return lines


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_ends_with_examples_and_a_bad_flag_exits_2(script):
    rc, out, _ = call(script, ["--help"])
    assert rc == 0
    assert 2 <= len(help_examples(out, script)) <= 3
    rc, _, err = call(script, ["--no-such-flag"])
    assert rc == 2 and f"{script}: error:" in err


def parsers(p: argparse.ArgumentParser):
    """A parser and its subcommands' parsers, recursively."""
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - {"ddpm-book"}))
def test_examples_parse_and_subcommands_have_them(script):
    # every example of every --help (subcommands' too) is a command line its parser accepts
    build = importlib.import_module(SCRIPTS[script].partition(":")[0]).build_parser
    for p in parsers(build()):
        for line in help_examples(p.format_help(), p.prog) if p.epilog else []:
            argv = shlex.split(line, comments=True)
            if argv[0] == script:
                build().parse_args(argv[1:])
        if p.prog != script:
            assert p.epilog, f"{p.prog} --help has no examples"


def test_outputs_land_under_runs_by_default():
    from ddpm_lib.cli import classifier, sample

    assert sample.build_parser().parse_args(["x"]).out == "runs/samples.png"
    assert classifier.build_parser().parse_args(["train"]).out == "runs/classifier.safetensors"
    assert Path(ROOT / ".gitignore").read_text().splitlines().count("/runs/") == 1


@pytest.fixture
def broken_data(tmp_path, monkeypatch):
    """A data folder ($DDPM_DATA_DIR) with the repository's registry whose checkpoints are truncated
    and whose data files are missing."""
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    shutil.copy(DATA / "registry.json", data / "registry.json")
    for name in ("swiss_roll_mlp.safetensors", "fashion_mnist_classifier.safetensors"):
        (data / "checkpoints" / name).write_bytes((DATA / "checkpoints" / name).read_bytes()[:1000])
    monkeypatch.setenv("DDPM_DATA_DIR", str(data))
    return data


@pytest.fixture
def broken_book(tmp_path):
    """A copy of the test book whose solution cell lost its `# END SOLUTION` line."""
    book = tmp_path / "book"
    shutil.copytree(ROOT / "tests" / "fixtures" / "book", book)
    nb = book / "chapters" / "01_basics.ipynb"
    nb.write_text(nb.read_text().replace("# END SOLUTION", "# (end)"))
    return book


# script: (a usage error, a failure while working); {tmp}, {book} are filled in
CASES = {
    "ddpm-train": (
        ["--dataset", "no-such-data", "--print-config"],
        ["--config", ROOT / "configs" / "swiss_roll.toml", "--out-dir", "{tmp}/a-file/run", "--steps", "1"],
    ),
    "ddpm-sample": (["no-such-model", "--out", "{tmp}/x.png"], ["swiss-roll-mlp", "--out", "{tmp}/x.png"]),
    "ddpm-evaluate": (["swiss-roll-mlp"], ["swiss-roll-mlp", "--bpd"]),
    "ddpm-pretrained": (["verify", "no-such-model"], ["verify", "swiss-roll-mlp"]),
    "ddpm-data": (["cifar10", "verify", "{tmp}/nothing"], ["verify"]),
    "ddpm-classifier": (["eval", "{tmp}/nothing.safetensors"], ["eval", "--n", "10"]),
    "ddpm-ablations": (
        ["--merge", "{tmp}/nothing.json"],
        ["--rows", "eps-simple-fixed", "--out", "{tmp}/a-file/t.json"],
    ),
    "ddpm-book": (["--book", "{book}", "execute"], ["--book", "{book}", "student", "{tmp}/student"]),
}
MESSAGES = {  # what the error says: (usage, failure)
    "ddpm-train": ("dataset must be one of", "is a file, not a folder"),
    "ddpm-sample": ("neither a checkpoint file nor a registered pretrained name", "is truncated"),
    "ddpm-evaluate": ("nothing to evaluate", "is truncated"),
    "ddpm-pretrained": ("unknown pretrained name 'no-such-model'", "is truncated"),
    "ddpm-data": ("CIFAR-10 not found", "registry check failed"),
    "ddpm-classifier": ("checkpoint not found", "is truncated"),
    "ddpm-ablations": ("--merge TABLE.json PART.json", "is a file, not a folder"),
    "ddpm-book": ("name the chapters to execute", "has no `# END SOLUTION`"),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_usage_error_exits_2_and_a_failure_1(script, tmp_path, broken_data, broken_book):
    assert set(CASES) == set(SCRIPTS)
    (tmp_path / "a-file").write_text("")
    fill = lambda argv: [str(a).format(tmp=tmp_path, book=broken_book) for a in argv]  # noqa: E731
    usage, failure = CASES[script]
    for argv, code, message in ((usage, 2, MESSAGES[script][0]), (failure, 1, MESSAGES[script][1])):
        rc, _, err = call(script, fill(argv))
        assert rc == code, (argv, err)
        assert_one_error_line(err)
        assert message in err, err


def test_the_exit_code_table():
    from ddpm_lib.checkpoints import CheckpointError
    from ddpm_lib.cifar import UnsafePickleError
    from ddpm_lib.cli import UsageError, exit_code, run
    from ddpm_lib.data import DataIntegrityError, DownloadError

    codes = {
        ValueError("x"): 2,
        FileNotFoundError("x"): 2,
        CheckpointError("x"): 2,
        UsageError("x"): 2,
        DataIntegrityError("x"): 1,
        DownloadError("x"): 1,
        OSError("x"): 1,
        PermissionError("x"): 1,
        UnsafePickleError("x"): 1,
        KeyboardInterrupt(): 130,
        TypeError("x"): None,
        RuntimeError("x"): None,
    }
    assert {type(e).__name__: exit_code(e) for e in codes} == {type(e).__name__: c for e, c in codes.items()}
    assert exit_code(ValueError("x"), {ValueError: 1}) == 1  # a layer above adds its own classes

    def bug():
        raise TypeError("a bug keeps its traceback")

    with pytest.raises(TypeError):
        run(bug)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run(lambda: None) == 0 and run(lambda: 3) == 3
        assert run(lambda: (_ for _ in ()).throw(DataIntegrityError("bad:\nfile a\n  file b"))) == 1
    assert err.getvalue() == "error: bad:\n  file a\n  file b\n"


# -- python -m ddpm_lib.<module>, in a fresh interpreter ------------------------------------------


def python_m(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.mark.slow  # a fresh interpreter each: about 2-3 s
@pytest.mark.parametrize("module", sorted(MODULES))
def test_python_m_runs_the_command_line(module):
    r = python_m(module, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warning that the module was imported twice
    script = MODULES[module]
    prog = "ddpm-data cifar10" if module == "ddpm_lib.cifar" else script
    assert r.stdout.startswith(f"usage: {prog} ")
    help_examples(r.stdout, prog)


@pytest.mark.slow  # a fresh interpreter each: about 2-3 s
def test_python_m_usage_error_exits_2_with_one_line(tmp_path):
    r = python_m("ddpm_lib.sample", tmp_path / "none.safetensors", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert_one_error_line(r.stderr)


@pytest.mark.slow  # a fresh interpreter each: about 2-3 s
def test_python_m_failure_exits_1(broken_data):
    r = python_m("ddpm_lib.pretrained", "verify", "swiss-roll-mlp")  # $DDPM_DATA_DIR: broken_data
    assert r.returncode == 1 and r.stdout == "" and "is truncated" in r.stderr
    assert_one_error_line(r.stderr)


@pytest.mark.slow  # a fresh interpreter each: about 2-3 s
def test_python_m_classifier_registers_its_model_once():
    # the module runs as __main__ only up to its entry point: FashionClassifier is registered once,
    # by ddpm_lib.classifier, so the loaded model is an instance of the library's class
    r = python_m("ddpm_lib.classifier", "eval", "--n", "200")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("test accuracy on 200 images: ")
