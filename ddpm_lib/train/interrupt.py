"""Stopping a run on Ctrl-C (SIGINT) or SIGTERM after a whole step, with a checkpoint at that step.

Python's own SIGINT raises KeyboardInterrupt wherever the interpreter happens to be (between the
optimizer step and the EMA update, halfway through a checkpoint), and SIGTERM ends the process at
once: nothing is saved and the steps since the last periodic checkpoint are lost. While
``Trainer.run`` trains, :class:`StopSignals` (installed from the main thread only; the previous
handlers are put back afterwards) turns either signal into a request that the loop reads once the
current step is complete. The trainer then writes a checkpoint at that step and raises
:class:`TrainingInterrupted`, a KeyboardInterrupt: a notebook's "interrupt kernel" stops the cell
as it always did, and ``ddpm-train`` turns it into one line and exit code 130 (SIGINT) or 143
(SIGTERM).

Sampling changes no state, so inside :meth:`StopSignals.interruptible` a signal raises
KeyboardInterrupt at once, and stopping never waits for a grid of samples to finish. Anywhere
else a further signal is only noted: the step and the checkpoint finish (a checkpoint is written
atomically in any case, and opening a run directory clears the temporaries a killed write left).

Under DDP every process must stop after the same step, while a signal may reach only some of them
(``kill`` of one pid) or reach them in different steps: at every step boundary the processes
combine what they received (:func:`~ddpm_lib.train.distributed.agreed_signal`, a collective on the
CPU), and sampling, which rank 0 does alone, is not interruptible. (torchrun passes a Ctrl-C on to
its workers, so each gets SIGINT twice: the second is only noted, as above.)

A signal is handled between two Python instructions: a process blocked inside one call (a
collective whose peer has died) notes it only when the call returns or times out. SIGKILL
(``kill -9``) stops such a process; it loses the steps since the last checkpoint but corrupts
nothing. A signal the process was started ignoring (a shell's background job ignores SIGINT)
stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

__all__ = ["SIGNALS", "StopSignals", "TrainingInterrupted"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after step ``step``; ``checkpoint`` holds that step (None in the
    processes other than rank 0, or when the run has no out_dir). ``exit_code``: 128 + the signal."""

    def __init__(self, step: int, checkpoint: Path | None, signum: int):
        self.step, self.checkpoint, self.signum = step, checkpoint, int(signum)
        saved = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"{signal.Signals(self.signum).name}: training stopped at step {step}{saved}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """While entered (``with StopSignals() as signals``), SIGINT and SIGTERM set ``signum`` (the
    first one received) instead of interrupting; inside ``interruptible()`` they raise
    KeyboardInterrupt at once (unless ``immediate`` is False, as under DDP). Entered outside the
    main thread it installs nothing (Python delivers signals to the main thread only); a signal
    that is ignored when it is entered stays ignored."""

    def __init__(self, immediate: bool = True):
        self.signum: int | None = None
        self.immediate = immediate
        self._raise_now = False
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                if signal.getsignal(s) != signal.SIG_IGN:  # an ignored signal stays ignored
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        while self._previous:
            s, handler = self._previous.popitem()
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
        if self._raise_now:
            self._raise_now = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self):
        """A phase that a signal may cut short (it changes no state): raises KeyboardInterrupt at
        the signal, or at once when one came before; a plain block when not ``immediate``."""
        if not self.immediate:
            yield
            return
        if self.signum is not None:
            raise KeyboardInterrupt
        self._raise_now = True
        try:
            yield
        finally:
            self._raise_now = False
