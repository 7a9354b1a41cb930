"""A run directory has one writing process (a flock on .lock), and opening it removes the
temporary files of writes that a kill interrupted, and nothing else."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm_lib.train.rundir import LOCK_NAME, RunDirInUseError, open_run_dir, remove_interrupted_writes
from ddpm_lib.cli.train import main
from ddpm_lib.train import TrainConfig, Trainer
from tiny_runs import TINY_ROLL, flags, tiny_roll

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def tiny(out_dir, **kw) -> TrainConfig:
    return tiny_roll(out_dir, **{"steps": 2, "sample_every": 0, "log_every": 1, **kw})


def child(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def other_process_holds(tmp_path):
    """A child process that holds tmp_path/run's lock until killed; yields (run dir, its pid)."""
    run = tmp_path / "run"
    p = child(
        "import sys\nfrom ddpm_lib.train.rundir import open_run_dir\nopen_run_dir(sys.argv[1])\n"
        "print('locked', flush=True)\nsys.stdin.read()\n",
        run,
    )
    assert p.stdout.readline().strip() == "locked", p.stderr.read()
    yield run, p
    p.kill()
    p.wait()


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_directory_and_pid(other_process_holds, capsys):
    run, holder = other_process_holds
    with pytest.raises(
        RunDirInUseError,
        match=rf"{run} is in use by another training process \(pid {holder.pid}, "
        rf"holding {run / LOCK_NAME}\)",
    ):
        Trainer(tiny(run))
    assert (
        main(
            [
                "--dataset",
                "swiss-roll",
                "--model",
                "mlp",
                "--out-dir",
                str(run),
                "--steps",
                "1",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: {run} is in use by another training process (pid {holder.pid}"
    )
    assert not any(run.glob("ckpt_*")) and not (run / "log.jsonl").exists()


@pytest.mark.slow
def test_a_killed_holders_lock_file_does_not_block_a_resume(other_process_holds):
    run, holder = other_process_holds
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (run / LOCK_NAME).read_text().strip() == str(
        holder.pid
    )  # the file stays; the kernel dropped the lock
    t = Trainer(tiny(run))
    t.run(progress=False)
    t.close()
    resumed = Trainer.resume(run, steps=4)
    assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
    resumed.run(progress=False)
    resumed.close()
    assert (run / "ckpt_4.safetensors").is_file()


@pytest.mark.slow
def test_in_one_process_the_lock_is_shared_and_released_by_close(tmp_path):
    run = tmp_path / "run"
    a = Trainer(tiny(run))
    a.run(progress=False)
    b = Trainer.resume(run, steps=3)  # a notebook resuming beside the trainer that wrote the run
    b.run(progress=False)
    a.close()
    p = child(
        "import sys\nfrom ddpm_lib.train.rundir import open_run_dir\ntry:\n    open_run_dir(sys.argv[1])\n"
        "except Exception as e:\n    print(type(e).__name__)\nelse:\n    print('locked')\n",
        run,
    )
    assert p.communicate()[0].strip() == "RunDirInUseError"  # b still holds it
    b.close()
    p = child(
        "import sys\nfrom ddpm_lib.train.rundir import open_run_dir\nopen_run_dir(sys.argv[1])\nprint('locked')\n",
        run,
    )
    assert p.communicate()[0].strip() == "locked"


@pytest.mark.slow
def test_two_train_commands_on_one_directory_one_is_refused(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ddpm_lib.train", *flags(TINY_ROLL), "--steps", "300", "--sample-every", "0"]
    cmd += ["--out-dir", str(out), "--no-progress", "--threads", "1"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    # refused by the lock while the other trains, or, if the other had already finished, by its checkpoints
    assert (
        f"error: {out} is in use by another training process" in refused or "already holds a run" in refused
    )


def _leave_atomic_write_temp(target: Path) -> None:
    """Start ddpm_lib's atomic write of ``target`` in a child process and kill it before the rename."""
    p = child(
        "import os, sys\nfrom ddpm_lib.utils import atomic_write\n"
        "def killed(tmp):\n    open(tmp, 'wb').write(b'half a file')\n    os._exit(9)\n"
        "atomic_write(sys.argv[1], killed)\n",
        target,
    )
    assert p.wait() == 9


@pytest.mark.slow
def test_opening_a_run_removes_interrupted_writes_only(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny(run)).run(progress=False)
    for name in ("ckpt_4.safetensors", "latest.json"):
        _leave_atomic_write_temp(run / name)
    left = {p.name for p in run.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME}
    assert len(left) == 2 and all(n.startswith((".ckpt_4.safetensors.", ".latest.json.")) for n in left)
    (run / ".samples_4.png.k2j4_x9a.png").write_bytes(b"x")  # the same writer's name for a sample grid
    (run / ".tmpA1b2C3").write_bytes(b"x")  # safetensors' own temporary (renamed onto the above in a save)
    (run / ".latest.safetensors.tmp4242").write_bytes(b"x")  # the trainer's latest.* link or copy
    users = [
        ".tmp",
        ".tmpA1b2C3d",
        ".ckpt_4.safetensors.abcd1234.json",
        ".ckpt_4.safetensors.notes",
        "notes.txt",
        ".latest.json.tmpx",
        "ckpt_2.safetensors.abcd1234.safetensors",
    ]
    for name in users:
        (run / name).write_text("the user's")
    kept = sorted(p.name for p in run.iterdir() if not p.name.startswith("."))

    resumed = Trainer.resume(run, steps=3)  # opening the run directory: lock, then clean
    resumed.close()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == sorted(
        [LOCK_NAME] + [u for u in users if u.startswith(".")]
    )
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == kept
    assert remove_interrupted_writes(run) == []


def test_open_run_dir_is_what_train_uses(tmp_path):
    release = open_run_dir(tmp_path / "x")
    assert (tmp_path / "x" / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    release()
    release()  # twice is harmless


# -- a corrupt latest.safetensors: resume falls back to the newest intact ckpt_N ----------------


def _flip_a_byte(path: Path, in_place: bool) -> None:
    """Change one byte of tensor data (the checksum catches it); in place keeps hard links to it."""
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    if in_place:
        with open(path, "r+b") as f:
            f.write(data)
    else:  # a new file: latest no longer shares ckpt_N's bytes, as after a copy or a damaged link
        tmp = path.with_name("corrupt")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _states(path):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(path).items() if k.startswith(("model.", "ema.", "optim."))}


def test_corrupt_latest_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys):
    straight = tmp_path / "straight"
    Trainer(tiny(straight, steps=5, ckpt_every=1, keep_last=3)).run(progress=False)
    run = tmp_path / "run"
    Trainer(tiny(run, steps=3, ckpt_every=1, keep_last=3)).run(progress=False)
    _flip_a_byte(run / "latest.safetensors", in_place=False)

    assert main(["--resume", str(run), "--steps", "5", "--no-progress"]) == 0
    notes = [s for s in capsys.readouterr().err.splitlines() if s.startswith("note:")]
    assert notes[0].startswith(
        f"note: cannot resume from latest.safetensors: {run / 'latest.safetensors'} is corrupt"
    )
    assert notes[1] == (
        f"note: resuming from {run / 'ckpt_3.safetensors'}, the newest intact checkpoint (step 3); "
        f"passed over: latest.safetensors"
    )
    s1, s2 = _states(straight / "ckpt_5.safetensors"), _states(run / "ckpt_5.safetensors")
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)  # as if never corrupted


def test_a_corrupt_hard_link_passes_over_its_checkpoint_too(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny(run, steps=3, ckpt_every=1, keep_last=3)).run(progress=False)
    _flip_a_byte(run / "latest.safetensors", in_place=True)  # latest and ckpt_3 are one file
    assert Trainer.resume(run).step_count == 2
    notes = [s for s in capsys.readouterr().err.splitlines() if s.startswith("note:")]
    assert (
        len(notes) == 2 and "passed over: latest.safetensors" in notes[1] and "ckpt_2.safetensors" in notes[1]
    )
    for step in (1, 2):  # ckpt_3 is latest, already corrupt
        _flip_a_byte(run / f"ckpt_{step}.safetensors", in_place=True)
    assert main(["--resume", str(run), "--steps", "5", "--no-progress"]) == 2
    assert f"error: cannot resume: no checkpoint in {run} can be loaded" in capsys.readouterr().err
