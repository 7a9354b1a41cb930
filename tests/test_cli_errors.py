"""Bad command lines, bad files and a failing disk (issue 12, items D5 and D6).

Each ends in one ``error:`` line that names the argument or the file, with the exit codes of
ddpm_lib.cli (2: the command must change; 1: a failure while working), never a traceback, and
before the work where it can be found before it; and results that used to come out silently
wrong (NaN samples, a silently ignored --data-root, a report of a checkpoint never written) are
refused or reported as they are.

The command lines run in-process through their ``main(argv)`` (``call`` of tests/test_cli.py); the
real disk-full case runs in a fresh interpreter (slow).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from test_cli import call
from test_crafted_checkpoints import rewrite_config, roll_run  # noqa: F401 - roll_run is a fixture

import ddpm_lib.cli.evaluate
import ddpm_lib.cli.sample
import ddpm_lib.utils
from ddpm_lib import GaussianDiffusion, NoiseSchedule
from ddpm_lib.checkpoints import CheckpointError, build_model, load_checkpoint, save_checkpoint
from ddpm_lib.cli import OUTPUT_RULE
from ddpm_lib.evaluate import load_test_split
from ddpm_lib.nets import MLP
from ddpm_lib.sample import sample_from_checkpoint
from ddpm_lib.sampling import ddim_sample, generate
from ddpm_lib.train import ConfigError, TrainConfig
from ddpm_lib.utils import atomic_write

ROOT = Path(__file__).resolve().parents[1]
ROLL_CFG = ROOT / "configs" / "swiss_roll.toml"
ROLL = ROOT / "data" / "checkpoints" / "swiss_roll_mlp.safetensors"
FMNIST = ROOT / "data" / "fashion-mnist"
NO_SPACE = (
    "Error while serializing: I/O error: No space left on device (os error 28)"  # as safetensors says it
)


def error_line(err: str) -> str:
    """The one error line of a command's stderr (``error: ...``, or argparse's ``PROG: error: ...``)."""
    assert "Traceback" not in err, err
    lines = [s for s in err.splitlines() if s.startswith("error: ") or ": error: " in s]
    assert len(lines) == 1, err
    return lines[0]


def _roll_with_ema(path: Path, edit) -> Path:
    """The shipped swiss-roll checkpoint with ``edit(ema_state)`` applied to its EMA weights (checksum valid)."""
    ckpt = load_checkpoint(ROLL)
    ema = {k: v.clone() for k, v in ckpt.ema_state.items()}
    edit(ema)
    return save_checkpoint(path, build_model(ckpt, use_ema=False), config=ckpt.config, ema_model=ema)


def _nan(ema):
    ema["linears.0.weight"][0, 0] = float("nan")


def _int(ema):
    ema["linears.0.weight"] = ema["linears.0.weight"].to(torch.int32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Bad inputs of every kind, in one folder (``{tmp}`` in the cases)."""
    d = tmp_path_factory.mktemp("bad")
    (d / "a-file").write_text("")
    (d / "binary.toml").write_bytes(bytes(range(256)))
    fm = d / "fashion-mnist"  # the shipped subset with its images cut short: a sha256 mismatch
    fm.mkdir()
    (fm / "train-10k-labels-idx1-ubyte.gz").write_bytes(
        (FMNIST / "train-10k-labels-idx1-ubyte.gz").read_bytes()
    )
    images = (FMNIST / "train-10k-images-idx3-ubyte.gz").read_bytes()
    (fm / "train-10k-images-idx3-ubyte.gz").write_bytes(images[:100_000])
    (d / "mixed-sizes").mkdir()  # a user's own images, readable but of two sizes
    for name, shape in {"a.png": (16, 16), "b.png": (8, 16)}.items():
        Image.fromarray(np.zeros(shape, np.uint8)).save(d / "mixed-sizes" / name)
    (d / "cifar10").mkdir()
    (d / "cifar10" / "cifar-10-python.tar.gz").write_bytes(os.urandom(5000))
    for name, text in {"config-list": "[1, 2]", "config-null": "null"}.items():
        rewrite_config(ROLL, d / f"{name}.safetensors", None, text=text)
    rewrite_config(
        ROLL, d / "betas-abc.safetensors", lambda c: c["diffusion"]["schedule"].update(betas="abc")
    )
    rewrite_config(ROLL, d / "no-prediction.safetensors", lambda c: c["diffusion"].pop("prediction"))
    _roll_with_ema(d / "nan-weights.safetensors", _nan)
    _roll_with_ema(d / "int-weights.safetensors", _int)
    registries = {
        "broken": "{\n",
        "empty": "{}",
        "files-list": '{"files": []}',
        "entry-without-sha": '{"pretrained": {"x": {"path": "x.safetensors", "size": 1}}}',
    }
    for name, text in registries.items():
        (d / f"registry-{name}").mkdir()
        (d / f"registry-{name}" / "registry.json").write_text(text)
    return d


NOT_TRAINED = ["--steps", "1", "--no-progress"]

# (script, argv, $DDPM_DATA_DIR or None, exit code, what the error line says); {tmp}: the files fixture
CASES = {
    # ---- D5: tracebacks and unclear messages -------------------------------------------------
    "train-out-dir-under-a-file": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--out-dir", "{tmp}/a-file/run", *NOT_TRAINED],
        None,
        1,
        ["cannot write --out-dir {tmp}/a-file/run", "{tmp}/a-file is a file, not a folder"],
    ),
    "train-device-foo": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--device", "foo", "--out-dir", "{tmp}/run-foo", *NOT_TRAINED],
        None,
        2,
        ["device must be", "got 'foo'"],
    ),
    "train-threads-negative": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--threads", "-1", "--print-config"],
        None,
        2,
        ["argument --threads: must be a positive integer", "got -1"],
    ),
    "train-model-args-negative": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--model-args", '{"hidden": -1}', "--out-dir", "{tmp}/run-mlp", *NOT_TRAINED],
        None,
        2,
        ["model_args {'hidden': -1}", "hidden must be a positive integer, got -1"],
    ),
    "train-T-huge": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--T", "100000000", "--print-config"],
        None,
        2,
        ["T must be <= 100000", "got 100000000"],
    ),
    "train-config-binary": (
        "ddpm-train",
        ["--config", "{tmp}/binary.toml", "--print-config"],
        None,
        2,
        ["configuration file {tmp}/binary.toml is not valid TOML"],
    ),
    "train-fashion-mnist-corrupt": (  # a failure, as ddpm-data verify reports it, not a usage error
        "ddpm-train",
        ["--data-root", "{tmp}/fashion-mnist", "--out-dir", "{tmp}/run-fm", *NOT_TRAINED],
        None,
        1,
        [
            "cannot load dataset 'fashion-mnist-10k'",
            "{tmp}/fashion-mnist/train-10k-images",
            "sha256 mismatch",
        ],
    ),
    "train-cifar10-corrupt": (
        "ddpm-train",
        ["--dataset", "cifar10", "--model", "unet-cifar10", "--data-root", "{tmp}/cifar10"]
        + ["--out-dir", "{tmp}/run-cifar", *NOT_TRAINED],
        None,
        1,
        ["cannot load dataset 'cifar10'", "{tmp}/cifar10/cifar-10-python.tar.gz", "not a readable tar.gz"],
    ),
    "sample-batch-size-negative": (
        "ddpm-sample",
        ["swiss-roll-mlp", "--batch-size", "-3", "--out", "{tmp}/s.png"],
        None,
        2,
        ["argument --batch-size: must be a positive integer", "got -3"],
    ),
    "sample-nrow-0": (  # refused at once, not after sampling
        "ddpm-sample",
        ["fashion-mnist-unet", "--nrow", "0", "--out", "{tmp}/s.png"],
        None,
        2,
        ["argument --nrow: must be a positive integer", "got 0"],
    ),
    "sample-trajectory-under-a-file": (  # refused before sampling
        "ddpm-sample",
        ["fashion-mnist-unet", "--out", "{tmp}/s.png", "--trajectory", "{tmp}/a-file/t.safetensors"],
        None,
        1,
        ["cannot write --trajectory {tmp}/a-file/t.safetensors", "{tmp}/a-file is a file, not a folder"],
    ),
    "sample-config-a-list": (
        "ddpm-sample",
        ["{tmp}/config-list.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/config-list.safetensors is corrupt", "config must be a JSON object", "got list [1, 2]"],
    ),
    "sample-config-null": (
        "ddpm-sample",
        ["{tmp}/config-null.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/config-null.safetensors is corrupt", "config must be a JSON object", "null"],
    ),
    "sample-betas-not-a-list": (
        "ddpm-sample",
        ["{tmp}/betas-abc.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/betas-abc.safetensors: config['diffusion']", "needs a list 'betas', got str"],
    ),
    "sample-config-without-prediction": (  # was: error: 'prediction'
        "ddpm-sample",
        ["{tmp}/no-prediction.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/no-prediction.safetensors: config['diffusion'] lacks the entry 'prediction'"],
    ),
    "sample-registry-not-json": (
        "ddpm-sample",
        ["swiss-roll-mlp", "--out", "{tmp}/s.png"],
        "registry-broken",
        1,
        ["{tmp}/registry-broken/registry.json is not a valid registry", "line 2 column 1"],
    ),
    "data-verify-registry-not-json": (
        "ddpm-data",
        ["verify"],
        "registry-broken",
        1,
        ["{tmp}/registry-broken/registry.json is not a valid registry: not JSON"],
    ),
    "data-verify-registry-empty": (  # was: KeyError: 'files'
        "ddpm-data",
        ["verify"],
        "registry-empty",
        1,
        ["{tmp}/registry-empty/registry.json lists no files"],
    ),
    "data-verify-files-not-a-table": (
        "ddpm-data",
        ["verify"],
        "registry-files-list",
        1,
        ["{tmp}/registry-files-list/registry.json is not a valid registry", "'files' table is a list"],
    ),
    "pretrained-list-registry-not-json": (
        "ddpm-pretrained",
        ["list"],
        "registry-broken",
        1,
        ["{tmp}/registry-broken/registry.json is not a valid registry"],
    ),
    "pretrained-verify-entry-without-sha256": (
        "ddpm-pretrained",
        ["verify"],
        "registry-entry-without-sha",
        1,
        ["{tmp}/registry-entry-without-sha/registry.json", "entry 'x' of 'pretrained' needs 'sha256'"],
    ),
    "evaluate-batch-size-0": (  # was: range() arg 3 must not be zero
        "ddpm-evaluate",
        ["fashion-mnist-unet", "--bpd", "--subset", "2", "--batch-size", "0"],
        None,
        2,
        ["argument --batch-size: must be a positive integer", "got 0"],
    ),
    "evaluate-json-under-a-file": (  # refused before the evaluation, not after it
        "ddpm-evaluate",
        ["fashion-mnist-unet", "--bpd", "--subset", "1", "--json", "{tmp}/a-file/r.json"],
        None,
        1,
        ["cannot write --json {tmp}/a-file/r.json", "{tmp}/a-file is a file, not a folder"],
    ),
    "classifier-out-under-a-file": (  # refused before the training
        "ddpm-classifier",
        ["train", "--out", "{tmp}/a-file/c.safetensors"],
        None,
        1,
        ["cannot write --out {tmp}/a-file/c.safetensors", "{tmp}/a-file is a file, not a folder"],
    ),
    "classifier-threads-negative": (
        "ddpm-classifier",
        ["train", "--threads", "-1"],
        None,
        2,
        ["argument --threads: must be a positive integer", "got -1"],
    ),
    # ---- D6: results that were silently wrong ---------------------------------------------------
    "sample-eta-nan": (  # wrote all-NaN samples and exited 0
        "ddpm-sample",
        ["swiss-roll-mlp", "--method", "ddim", "--eta", "nan", "--out", "{tmp}/s.png"],
        None,
        2,
        ["argument --eta: must be a finite number >= 0", "got 'nan'"],
    ),
    "sample-eta-inf": (
        "ddpm-sample",
        ["swiss-roll-mlp", "--method", "ddim", "--eta", "inf", "--out", "{tmp}/s.png"],
        None,
        2,
        ["argument --eta: must be a finite number >= 0", "got 'inf'"],
    ),
    "sample-nan-weights": (
        "ddpm-sample",
        ["{tmp}/nan-weights.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/nan-weights.safetensors: tensor ema.linears.0.weight holds 1 NaN or infinite value"],
    ),
    "sample-integer-weights": (
        "ddpm-sample",
        ["{tmp}/int-weights.safetensors", "--out", "{tmp}/s.png"],
        None,
        2,
        ["{tmp}/int-weights.safetensors: tensor ema.linears.0.weight has dtype int32, not floating point"],
    ),
    "evaluate-subset-0": (  # evaluated all 10,000 images
        "ddpm-evaluate",
        ["fashion-mnist-unet", "--bpd", "--subset", "0"],
        None,
        2,
        ["argument --subset: must be a positive integer", "got 0"],
    ),
    "evaluate-subset-negative": (  # evaluated the last 2
        "ddpm-evaluate",
        ["fashion-mnist-unet", "--bpd", "--subset", "-9998"],
        None,
        2,
        ["argument --subset: must be a positive integer", "got -9998"],
    ),
    "train-own-images-of-two-sizes": (  # the files are sound, the request is not: a usage error
        "ddpm-train",
        ["--dataset", "images", "--model", "unet", "--data-root", "{tmp}/mixed-sizes"]
        + ["--out-dir", "{tmp}/run-mixed", *NOT_TRAINED],
        None,
        2,
        [
            "dataset 'images' with data_root '{tmp}/mixed-sizes'",
            "b.png: 16x8 pixels, the first image has 16x16",
        ],
    ),
    "train-data-root-missing": (  # was ignored: the shipped data were used
        "ddpm-train",
        ["--data-root", "{tmp}/no-such-folder", "--out-dir", "{tmp}/run-dr", *NOT_TRAINED],
        None,
        2,
        ["dataset 'fashion-mnist-10k' with data_root '{tmp}/no-such-folder': no such folder"],
    ),
    "train-data-root-missing-cifar10": (
        "ddpm-train",
        ["--dataset", "cifar10", "--model", "unet-cifar10", "--data-root", "{tmp}/no-such-folder"]
        + ["--out-dir", "{tmp}/run-dr-cifar", *NOT_TRAINED],
        None,
        2,
        ["dataset 'cifar10' with data_root '{tmp}/no-such-folder'", "does not exist"],
    ),
    "train-data-root-of-points": (
        "ddpm-train",
        ["--config", ROLL_CFG, "--data-root", "{tmp}/fashion-mnist", "--print-config"],
        None,
        2,
        ["data_root names a folder of image files; dataset 'swiss-roll'"],
    ),
    "train-betas-decrease": (
        "ddpm-train",
        ["--beta-start", "0.5", "--beta-end", "0.1", "--print-config"],
        None,
        2,
        ["betas must increase: beta_start 0.5 > beta_end 0.1"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_invocation_ends_in_one_error_line(case, files, monkeypatch):
    script, argv, data_dir, code, says = CASES[case]
    if data_dir:
        monkeypatch.setenv("DDPM_DATA_DIR", str(files / data_dir))
    rc, _, err = call(script, [str(a).replace("{tmp}", str(files)) for a in argv])
    line = error_line(err)
    assert rc == code, err
    for s in says:
        assert s.replace("{tmp}", str(files)) in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_a_missing_device_is_refused_before_anything_is_made(tmp_path):
    run = tmp_path / "run"
    rc, _, err = call(
        "ddpm-train", ["--config", ROLL_CFG, "--device", "cuda", "--out-dir", run, *NOT_TRAINED]
    )
    assert rc == 2 and "device 'cuda' was asked for but torch.cuda.is_available() is False" in error_line(err)
    assert not run.exists()


# ---- outputs: checked at the start; missing folders made, with a note; symlinks written through ---


def _refuse_writes_in(monkeypatch, folder: Path):
    """Make ``folder`` unwritable as far as the library can tell (chmod does not stop root)."""
    real = ddpm_lib.utils.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(ddpm_lib.utils.tempfile, "mkstemp", mkstemp)


def _must_not_run(*a, **k):
    raise AssertionError("the work ran before the output was checked")


@pytest.mark.parametrize(
    "script, argv, option, work",
    [
        (
            "ddpm-evaluate",
            ["fashion-mnist-unet", "--bpd", "--subset", "1", "--json", "{ro}/r.json"],
            "--json",
            "evaluate",
        ),
        ("ddpm-sample", ["swiss-roll-mlp", "--out", "{ro}/s.png"], "--out", "sample"),
        ("ddpm-train", ["--config", ROLL_CFG, "--out-dir", "{ro}/run", *NOT_TRAINED], "--out-dir", None),
    ],
)
def test_an_unwritable_output_is_refused_before_the_work(script, argv, option, work, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    target = ro / "run" if script == "ddpm-train" else ro
    (ro / "run").mkdir()
    _refuse_writes_in(monkeypatch, target)
    if work == "evaluate":
        monkeypatch.setattr(ddpm_lib.cli.evaluate, "evaluate_checkpoint", _must_not_run)
    elif work == "sample":
        monkeypatch.setattr(ddpm_lib.cli.sample, "sample_from_checkpoint", _must_not_run)
    rc, _, err = call(script, [str(a).format(ro=ro) for a in argv])
    line = error_line(err)
    assert rc == 1, err
    assert f"cannot write {option} {ro}" in line and "Permission denied" in line, line


def test_missing_output_folders_are_made_with_a_note(tmp_path):
    out = tmp_path / "new" / "deeper" / "s.png"
    rc, _, err = call("ddpm-sample", ["swiss-roll-mlp", "--n", "8", "--no-progress", "--out", out])
    assert rc == 0, err
    assert f"note: made the folder {out.parent} for --out {out}" in err
    assert out.read_bytes()[:4] == b"\x89PNG"
    for script, argv in (("ddpm-sample", ["x"]), ("ddpm-evaluate", ["x"])):  # the rule is in the --help
        assert " ".join(OUTPUT_RULE.split()) in " ".join(call(script, [*argv, "--help"])[1].split())


def test_an_output_symlink_is_written_through(tmp_path):
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "samples.png"
    target.write_text("old")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    rc, out, err = call("ddpm-sample", ["swiss-roll-mlp", "--n", "8", "--no-progress", "--out", link])
    assert rc == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert f"out: {link}" in out
    # the library's writer, on which every output goes: a dangling link gets its target made
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "kept" / "later.json")
    assert atomic_write(dangling, lambda tmp: Path(tmp).write_text("{}")) == dangling
    assert dangling.is_symlink() and (tmp_path / "kept" / "later.json").read_text() == "{}"


# ---- a full disk: the error names the file --------------------------------------------------------


def _full_disk(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk_safetensors(*a, **k):
    raise SafetensorError(NO_SPACE)


def test_a_full_disk_names_the_png(tmp_path, monkeypatch):
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _full_disk)
    png = tmp_path / "s.png"
    rc, _, err = call("ddpm-sample", ["swiss-roll-mlp", "--n", "8", "--no-progress", "--out", png])
    assert rc == 1 and f"cannot write {png}: No space left on device" in error_line(err), err
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_full_disk_names_the_safetensors_file(tmp_path, monkeypatch):
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", _full_disk_safetensors)
    raw = tmp_path / "s.safetensors"
    argv = ["swiss-roll-mlp", "--n", "8", "--no-progress", "--out", tmp_path / "s.png", "--save-samples", raw]
    rc, _, err = call("ddpm-sample", argv)
    assert rc == 1 and f"cannot write {raw}: No space left on device" in error_line(err), err


@pytest.mark.slow  # the first Trainer of a process imports torch._dynamo (Adam): 2-4 s
def test_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    import ddpm_lib.checkpoints

    monkeypatch.setattr(ddpm_lib.checkpoints, "save_file", _full_disk_safetensors)
    run = tmp_path / "run"
    argv = ["--config", ROLL_CFG, "--out-dir", run, "--sample-every", "0", "--batch-size", "8", *NOT_TRAINED]
    rc, _, err = call("ddpm-train", argv)
    assert rc == 1 and f"cannot write {run / 'ckpt_1.safetensors'}: No space left on device" in error_line(
        err
    )


def test_atomic_write_names_the_file_it_could_not_write(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(OSError) as e:
        atomic_write(path, _full_disk)
    assert e.value.errno == errno.ENOSPC and str(e.value) == f"cannot write {path}: No space left on device"
    with pytest.raises(PermissionError, match=f"cannot write {path}: Permission denied"):
        atomic_write(path, lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "x")))
    with pytest.raises(ConnectionResetError):  # not an error of writing (a download's): as it was
        atomic_write(path, lambda tmp: (_ for _ in ()).throw(ConnectionResetError(errno.ECONNRESET, "x")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a fresh interpreter that trains one step: about 5 s
def test_a_file_size_limit_during_a_real_checkpoint_write(tmp_path):
    # the operating system refuses the write (EFBIG past RLIMIT_FSIZE, as ENOSPC on a full disk):
    # safetensors' own error becomes one line naming the checkpoint
    def small_files():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "ddpm_lib.train", "--config", ROLL_CFG, "--out-dir", run]
        + ["--sample-every", "0", "--threads", "1", *NOT_TRAINED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 1, r.stderr
    assert f"error: cannot write {run / 'ckpt_1.safetensors'}: File too large" in error_line(r.stderr)
    assert not (run / "ckpt_1.safetensors").exists() and not (run / "latest.safetensors").exists()


# ---- resume reports only what it wrote ------------------------------------------------------------


@pytest.mark.slow  # trains a run first (and the first Trainer of a process imports torch._dynamo)
def test_resume_past_the_target_reports_no_checkpoint(roll_run, tmp_path):  # noqa: F811 - the fixture
    new = tmp_path / "new"
    rc, _, err = call("ddpm-train", ["--resume", roll_run, "--steps", "1", "--out-dir", new, "--no-progress"])
    assert rc == 0, err
    assert "done: nothing trained (the run is at step 2); no checkpoint written" in err
    assert "latest.safetensors" not in err and not (new / "latest.safetensors").exists()


# ---- the library refuses what the command lines refuse --------------------------------------------


def test_ddim_refuses_a_non_finite_eta():
    d = GaussianDiffusion(NoiseSchedule.linear(T=10, beta_start=0.1, beta_end=0.7), decoder="gaussian")
    x, t = torch.zeros(2, 2), torch.full((2,), 5)
    calls = []

    def model(x, t):
        calls.append(1)
        return torch.zeros_like(x)

    for eta in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
            d.ddim_step(torch.zeros(2, 2), x, t, 2, eta=eta)
        with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
            ddim_sample(model, d, (2, 2), steps=5, eta=eta, progress=False)
        with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
            generate(model, d, (2,), 4, method="ddim", steps=5, eta=eta, progress=False)
    assert calls == []  # refused before the network ran
    assert torch.isfinite(generate(model, d, (2,), 4, method="ddim", steps=5, eta=1, progress=False)[0]).all()


def test_generate_refuses_a_batch_size_that_is_not_positive():
    d = GaussianDiffusion(NoiseSchedule.linear(T=10, beta_start=0.1, beta_end=0.7), decoder="gaussian")
    for bs in (-3, 0, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer or None"):
            generate(lambda x, t: x, d, (2,), 4, batch_size=bs, progress=False)


def test_sample_from_checkpoint_checks_its_arguments_before_loading(tmp_path):
    nowhere = tmp_path / "none.safetensors"  # loading it would raise FileNotFoundError
    for kwargs, message in (
        ({"nrow": 0}, "nrow"),
        ({"batch_size": -3}, "batch_size"),
        ({"method": "ddim", "eta": float("nan")}, "eta"),
        ({"out": tmp_path}, "is a folder"),
    ):
        with pytest.raises((ValueError, OSError), match=message):
            sample_from_checkpoint(nowhere, 4, **kwargs)


def test_weights_must_be_finite_floating_point(files):
    for name, says in (("nan", "holds 1 NaN or infinite value(s) of 256"), ("int", "has dtype int32")):
        path = files / f"{name}-weights.safetensors"
        with pytest.raises(CheckpointError, match=re.escape("tensor ema.linears.0.weight " + says)) as e:
            build_model(path)
        assert str(e.value).startswith(f"{path}: ")
        build_model(path, use_ema=False)  # the raw weights are intact
        ckpt = load_checkpoint(path)
        with pytest.raises(CheckpointError, match="tensor ema.linears.0.weight"):
            load_checkpoint(path, model=MLP(**ckpt.model_args), use_ema=True)


def test_the_test_split_subset_is_bounded():
    assert len(load_test_split("fashion-mnist", 3)) == 3
    for subset in (0, -9998, 10001):
        with pytest.raises(ValueError, match=r"subset must be an integer in 1\.\.10000"):
            load_test_split("fashion-mnist", subset)


def test_a_decreasing_beta_schedule():
    # training refuses it; the library's schedules allow it (an experiment may want one), with a warning
    with pytest.raises(ConfigError, match="betas must increase: beta_start 0.5 > beta_end 0.1"):
        TrainConfig(beta_start=0.5, beta_end=0.1).validate()
    TrainConfig(schedule="cosine", beta_start=0.5, beta_end=0.1).validate()  # cosine does not use them
    with pytest.raises(ConfigError, match=r"beta_end must lie in the open interval \(0, 1\)"):
        TrainConfig(beta_end=1.5).validate()
    with pytest.warns(UserWarning, match="beta_start 0.7 > beta_end 0.1: the betas decrease"):
        NoiseSchedule.linear(T=10, beta_start=0.7, beta_end=0.1)
    with pytest.warns(UserWarning, match=r"the betas decrease at t = 2 \(beta_2 = 0.5 < beta_1 = 0.9\)"):
        NoiseSchedule.from_betas([0.9, 0.5, 0.99])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NoiseSchedule.from_betas([0.9, 0.5], warn=False)
        NoiseSchedule.linear(T=10, beta_start=0.7, beta_end=0.1, warn=False)
        NoiseSchedule.from_betas([0.5, 0.9, 0.9, 0.99])  # constant steps are not a decrease
