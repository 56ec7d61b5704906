"""Progress of one run: a tqdm bar (loss, lr, it/s, ETA) on a terminal, plain lines otherwise.

Only rank 0 shows anything. Without a terminal (a log file, CI) a bar would print
thousands of carriage returns, so a line every 5% of the run is printed instead.
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, total: int, start: int, show: bool) -> None:
        self.label, self.total = label, total
        self.bar = tqdm(
            total=total,
            initial=start,
            desc=label,
            unit="it",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None if show else True,  # None: off when stderr is not a terminal
        )
        self.lines = show and self.bar.disable
        self.every = max(1, total // 20)
        self.start, self.started = start, time.perf_counter()
        self.loss = math.nan  # the last logged interval's mean loss

    def show_loss(self, loss: float) -> None:
        """The loss shown from now on (read once per log interval: reading waits for a GPU)."""
        self.loss = loss

    def update(self, done: int, lr: float) -> None:
        loss = self.loss
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if self.lines and (done % self.every == 0 or done == self.total):
            rate = (done - self.start) / (time.perf_counter() - self.started)
            eta = (self.total - done) / rate if rate > 0 else math.nan
            print(
                f"{self.label}: {done}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                f"{rate:.2f} it/s ETA {eta:.0f} s",
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()
