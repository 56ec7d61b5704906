"""Progress of an experiment and of each run: tqdm bars on a terminal, plain lines otherwise.

On a terminal the experiment's bar (runs done / total, elapsed, ETA) sits above the
bar of the run in training (loss, lr, it/s, its own ETA). Without a terminal (a log
file, CI) bars would print thousands of carriage returns: a run prints a line every
5% of its iterations and the experiment a line after each run. Only rank 0 shows
anything. The experiment's ETA counts iterations still to train at the average wall
time per iteration so far, evaluations and checkpoints included.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

_experiment: ExperimentProgress | None = None  # the one `run` shows, while it runs


def clock(seconds: float) -> str:
    """1:02:03, 12:34 or 0:05: hours only when there are any."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ExperimentProgress:
    """Runs done out of the total, and iterations trained against those still to train."""

    def __init__(self, runs: int, done_runs: int, iterations: int, show: bool) -> None:
        self.runs, self.done_runs, self.iterations = runs, done_runs, iterations
        self.trained, self.started = 0, time.perf_counter()
        self.bar = tqdm(
            total=max(iterations, 1),
            desc=self._desc(),
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0,  # the average over the whole experiment, not the last head's speed
            bar_format="{desc} |{bar}| elapsed {elapsed}, ETA {remaining}",
            disable=None if show else True,  # None: off when stderr is not a terminal
        )
        self.lines = show and self.bar.disable

    def _desc(self) -> str:
        return f"experiment: runs {self.done_runs}/{self.runs}"

    def eta(self) -> float:
        if self.trained == 0:
            return math.nan
        elapsed = time.perf_counter() - self.started
        return max(0.0, elapsed / self.trained * (self.iterations - self.trained))

    def step(self, iterations: int) -> None:
        self.trained += iterations
        self.bar.update(iterations)

    def run_finished(self) -> None:
        self.done_runs += 1
        self.bar.set_description_str(self._desc())
        if self.lines:
            elapsed = time.perf_counter() - self.started
            print(f"{self._desc()}, elapsed {clock(elapsed)}, ETA {clock(self.eta())}", flush=True)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def experiment(runs: int, done_runs: int, iterations: int, show: bool) -> Iterator[None]:
    """Show the experiment's progress while the block runs; Progress bars feed it."""
    global _experiment
    _experiment = ExperimentProgress(runs, done_runs, iterations, show)
    try:
        yield
    finally:
        # A run interrupted inside the block left its bar open below this one: close it
        # first, or the cursor would end on this bar's line.
        close_all()
        _experiment = None


def run_finished() -> None:
    if _experiment is not None:
        _experiment.run_finished()


def say(text: str) -> None:
    """A line on stdout that does not cut through a bar: tqdm clears and redraws them."""
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def close_all() -> None:
    """End every open bar's line (before an interrupt message, say).

    The lowest bar first: closing a bar below another leaves the cursor on the upper one,
    and the top bar's own close then ends with a newline.
    """
    bars = list(getattr(tqdm, "_instances", ()))
    for bar in sorted(bars, key=lambda b: abs(getattr(b, "pos", 0)), reverse=True):
        bar.close()


class Progress:
    """One run's bar (or `runs` runs trained together), below the experiment's when there
    is one."""

    def __init__(self, label: str, total: int, start: int, show: bool, runs: int = 1) -> None:
        self.label, self.total, self.runs = label, total, runs
        inside = _experiment is not None
        self.bar = tqdm(
            total=total,
            initial=start,
            desc=label,
            unit="it",
            file=sys.stderr,
            dynamic_ncols=True,
            position=1 if inside else None,
            leave=not inside,  # inside an experiment, the run's result line replaces it
            disable=None if show else True,  # None: off when stderr is not a terminal
        )
        self.lines = show and self.bar.disable
        self.every = max(1, total // 20)
        self.start, self.started, self.shown = start, time.perf_counter(), start
        self.loss = math.nan  # the last logged interval's mean loss

    def show_loss(self, loss: float) -> None:
        """The loss shown from now on (read once per log interval: reading waits for a GPU)."""
        self.loss = loss

    def update(self, done: int, lr: float) -> None:
        """`done` iterations of the run are finished (it may jump by more than one)."""
        # Before the first log interval there is no loss read yet: show none, not "nan".
        loss = "–" if math.isnan(self.loss) else f"{self.loss:.4f}"
        step, self.shown = done - self.shown, done
        self.bar.update(step)
        self.bar.set_postfix(loss=loss, lr=f"{lr:.2e}", refresh=False)
        if _experiment is not None:
            _experiment.step(step * self.runs)
        if self.lines and (done % self.every == 0 or done == self.total):
            rate = (done - self.start) / (time.perf_counter() - self.started)
            eta = (self.total - done) / rate if rate > 0 else math.nan
            print(
                f"{self.label}: {done}/{self.total} loss {loss} lr {lr:.2e} "
                f"{rate:.2f} it/s ETA {eta:.0f} s",
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()
