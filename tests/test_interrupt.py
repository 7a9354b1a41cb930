"""Ctrl-C (SIGINT) and SIGTERM stop training after a whole step, with a checkpoint of that step.

In one process (Trainer.run, as a notebook calls it): a signal at step k gives a checkpoint of
step k and a KeyboardInterrupt (TrainingInterrupted); a second signal during that checkpoint's
write changes nothing; a signal during sampling cuts the sampling short; the previous handlers
come back; off the main thread nothing is installed, and an ignored signal stays ignored. From
the command line: exit code 130 (143 for SIGTERM), one line naming the checkpoint and the resume
command, no traceback, and that resume ends bit-identical to a run that was never interrupted.
Under DDP (two gloo processes) a signal that reaches rank 0 alone stops both after the same step.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ddpm_lib.train.samples as samples_module
import ddpm_lib.train.state as state_module
from ddpm_lib.checkpoints import load_checkpoint
from ddpm_lib.train import TrainConfig, Trainer, config_from_dict
from ddpm_lib.train.interrupt import StopSignals, TrainingInterrupted
from ddpm_lib.train.rundir import INTERRUPTED_WRITE
from tiny_runs import TINY_ROLL, flags, free_port, join_as_rank, tiny_roll

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def tiny(out_dir, **kw) -> TrainConfig:
    return tiny_roll(out_dir, **{"steps": 1000, "sample_every": 0, "ckpt_every": 0, "log_every": 1, **kw})


def signal_at(step: int, signum=signal.SIGINT):
    """A callback that sends this process ``signum`` after step ``step``."""

    def callback(tr):
        if tr.step_count == step:
            os.kill(os.getpid(), signum)

    return callback


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if any(r.fullmatch(p.name) for r in INTERRUPTED_WRITE)]


# -- in one process -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_step_reached_and_raises_keyboard_interrupt(tmp_path, signum):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    tr = Trainer(tiny(tmp_path, ckpt_every=5))
    with pytest.raises(KeyboardInterrupt) as info:
        tr.run(progress=False, callback=signal_at(7, signum))
    stop = info.value
    assert isinstance(stop, TrainingInterrupted) and stop.step == 7 == tr.step_count
    assert stop.signum == signum and stop.exit_code == 128 + signum
    assert stop.checkpoint == tmp_path / "ckpt_7.safetensors"
    assert (
        load_checkpoint(stop.checkpoint).step == 7
        and load_checkpoint(tmp_path / "latest.safetensors").step == 7
    )
    assert (
        str(stop)
        == f"{signal.Signals(signum).name}: training stopped at step 7; checkpoint {stop.checkpoint}"
    )
    # the last window stays open in the checkpoint (log_every 1: every step's line is written)
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").open()] == list(range(1, 8))
    assert {s: signal.getsignal(s) for s in before} == before  # the previous handlers are back
    assert not leftovers(tmp_path)
    tr.close()


def test_without_out_dir_nothing_is_written_and_the_interrupt_still_comes(tmp_path):
    tr = Trainer(tiny(""))
    with pytest.raises(TrainingInterrupted) as info:
        tr.run(progress=False, callback=signal_at(3))
    assert info.value.step == 3 and info.value.checkpoint is None
    assert str(info.value) == "SIGINT: training stopped at step 3"


def test_a_second_signal_during_the_save_changes_nothing(tmp_path, monkeypatch):
    real = state_module.save_checkpoint
    calls = []

    def save_and_get_interrupted(path, *args, **kw):
        calls.append(path)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while the checkpoint is being written
        os.kill(os.getpid(), signal.SIGTERM)
        return real(path, *args, **kw)

    monkeypatch.setattr(state_module, "save_checkpoint", save_and_get_interrupted)
    tr = Trainer(tiny(tmp_path))
    with pytest.raises(TrainingInterrupted) as info:
        tr.run(progress=False, callback=signal_at(4))
    assert calls == [tmp_path / "ckpt_4.safetensors"] and info.value.signum == signal.SIGINT
    assert load_checkpoint(tmp_path / "latest.safetensors").step == 4 and not leftovers(tmp_path)


def test_a_signal_during_sampling_cuts_it_short(tmp_path, monkeypatch):
    def slow_generate(*args, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # the signal must end this at once
        raise AssertionError("sampling was not interrupted")

    monkeypatch.setattr(samples_module, "generate", slow_generate)
    tr = Trainer(tiny(tmp_path, sample_every=3, n_samples=10))
    t0 = time.perf_counter()
    with pytest.raises(TrainingInterrupted) as info:
        tr.run(progress=False)
    assert time.perf_counter() - t0 < 20
    assert info.value.step == 3 and load_checkpoint(info.value.checkpoint).step == 3
    assert not (tmp_path / "samples_3.png").exists()


def test_off_the_main_thread_no_handler_is_installed(tmp_path):
    errors, installed, before = [], [], signal.getsignal(signal.SIGINT)

    def train():
        try:
            tr = Trainer(tiny(tmp_path, steps=3))
            tr.run(progress=False, callback=lambda t: installed.append(signal.getsignal(signal.SIGINT)))
            tr.close()
        except BaseException as e:  # noqa: B036 - reported to the main thread
            errors.append(e)

    t = threading.Thread(target=train)
    t.start()
    t.join()
    assert not errors and installed == [before] * 3
    assert load_checkpoint(tmp_path / "latest.safetensors").step == 3


def test_stop_signals_restores_and_only_interrupts_where_allowed():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)  # noted, nothing more
        assert signals.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a phase entered after a signal does not start
            with signals.interruptible():
                pass
    assert signal.getsignal(signal.SIGTERM) == before
    with StopSignals(immediate=False) as signals:  # under DDP: nothing is cut short
        with signals.interruptible():
            os.kill(os.getpid(), signal.SIGINT)
        assert signals.signum == signal.SIGINT
    # a signal the process was started ignoring (a shell's background job ignores SIGINT) stays ignored
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as signals:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert signals.signum is None
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the command line ---------------------------------------------------------------------------

CONFIG = flags({**TINY_ROLL, "sample_every": 0, "ckpt_every": 20, "log_every": 5})
LINE = re.compile(
    r"interrupted at step (\d+); checkpoint (\S+); resume with: python -m ddpm_lib.train --resume (\S+)"
)


def train(*args, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "ddpm_lib.train", *map(str, args), "--no-progress", "--threads", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished(*args) -> str:
    p = train(*args)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return err


def logged_steps(out: Path) -> int:
    try:
        return len((out / "log.jsonl").read_text().splitlines()) * 5
    except FileNotFoundError:
        return 0


def stored_config(out: Path) -> TrainConfig:
    return config_from_dict(load_checkpoint(out / "latest.safetensors").config["train"])


def weights_and_history(path: Path) -> dict:
    history = [
        f"extra.history.{k}"
        for k in ("step", "loss", "grad_norm", "window_step", "window_sum", "window_count")
    ]
    return {
        k: v
        for k, v in load_file(str(path)).items()
        if k.startswith(("model.", "ema.", "optim.")) or k in history
    }


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, signum):
    out = tmp_path / "stopped"
    p = train(*CONFIG, "--steps", 100000, "--out-dir", out)
    deadline = time.monotonic() + 120
    while logged_steps(out) < 45:  # past the periodic checkpoints of steps 20 and 40
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    seen = logged_steps(out)
    p.send_signal(signum)
    _, err = p.communicate(timeout=120)

    assert p.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], err
    assert "Traceback" not in err and "error:" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("training mlp on swiss-roll"), err
    m = LINE.fullmatch(lines[1])
    assert m, lines[1]
    step = int(m.group(1))
    assert Path(m.group(2)) == out / f"ckpt_{step}.safetensors" and Path(m.group(3)) == out
    assert step >= seen >= 45 and load_checkpoint(out / "latest.safetensors").step == step
    # keep_last = 2: the stop's checkpoint and the newest before it (when the signal came at a
    # multiple of 20, the stop's checkpoint is that step's periodic one, and 20 steps before stays)
    kept = sorted({*range(20, step + 1, 20), step})[-2:]
    assert {p.name for p in out.glob("ckpt_*.safetensors")} == {f"ckpt_{s}.safetensors" for s in kept}
    assert not leftovers(out)

    # the printed command continues from that step, and ends where a run never stopped ends
    end = step + 7
    err = finished("--resume", m.group(3), "--steps", end)
    assert f"step {step} -> {end}" in err
    straight = Trainer(
        config_from_dict({"steps": end, "out_dir": str(tmp_path / "straight")}, base=stored_config(out))
    )
    straight.run(progress=False)
    straight.close()
    a = weights_and_history(out / f"ckpt_{end}.safetensors")
    b = weights_and_history(tmp_path / "straight" / f"ckpt_{end}.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert b["extra.history.step"].tolist() == list(range(1, end + 1))


# -- data parallel ------------------------------------------------------------------------------


def _ddp_worker(rank, world, port, out_dir):
    join_as_rank(rank, world, port)
    torch.set_num_threads(1)
    tr = Trainer(tiny(out_dir))
    assert tr.distributed
    # only rank 0 is signalled, after step 5: the other process learns it at the same step boundary
    callback = signal_at(5, signal.SIGTERM) if rank == 0 else None
    try:
        tr.run(progress=False, callback=callback)
    except TrainingInterrupted as e:
        assert (e.step, e.signum) == (5, signal.SIGTERM) and tr.step_count == 5
        assert (e.checkpoint is not None) == (rank == 0)
    else:
        raise AssertionError(f"rank {rank} was not interrupted")
    finally:
        tr.close()


@pytest.mark.slow
def test_under_ddp_a_signal_to_one_process_stops_all_after_the_same_step(tmp_path):
    ctx = torch.multiprocessing.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=1):  # raises if a worker failed
            # processes that disagree on the step hang in a collective, and ignore SIGTERM: SIGKILL them
            assert time.monotonic() < deadline, "the two processes did not stop together"
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    ck = load_checkpoint(tmp_path / "latest.safetensors")
    assert ck.step == 5 and {"torch_cpu.rank0", "torch_cpu.rank1"} <= set(ck.rng_states)
    assert not leftovers(tmp_path)
