"""What a training call shows while it runs: how far it is towards its *real* stopping rule, and when it will end.

A run ends at the first of its budgets and targets (:class:`lazyhasty.Stop`), so its progress is the largest of
step / max_steps, t / max_time and, with a loss target, log(L0 / L) / log(L0 / loss_below) (the fraction of the
way, on a log scale, from the initial loss to the target); a call ends with its slowest run, so the call's
progress is the smallest over the runs still training. On a terminal it is a bar whose ETA extrapolates that
fraction; elsewhere (SLURM logs, pipes) one plain line at most every ``every_s`` seconds, never a bar.
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

EVERY_S = 30.0  # off a terminal: one plain line at most this often


def run_fraction(step: int, t: float, loss: float, loss0: float, stop) -> float:
    """How far one run is towards its stopping rule, in [0, 1] (see the module docstring)."""
    f = 0.0
    if stop.max_steps:
        f = max(f, step / stop.max_steps)
    if stop.max_time:
        f = max(f, t / stop.max_time)
    target = stop.loss_below
    if target is not None and math.isfinite(loss):
        if loss0 <= target or loss <= target:
            f = 1.0
        elif target > 0 and loss < loss0:
            f = max(f, math.log(loss0 / loss) / math.log(loss0 / target))
    return min(max(f, 0.0), 1.0)


def _duration(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """A progress display for one ``train`` call: a bar on a terminal, a plain line every ``every_s`` seconds
    elsewhere, nothing with ``enabled=False`` (``enabled=None``: the same as True)."""

    def __init__(self, desc: str, enabled: bool | None = None, every_s: float | None = None, stream=None):
        self.desc, self.every_s, self.stream = desc, EVERY_S if every_s is None else every_s, stream or sys.stderr
        self.on = enabled is not False
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=1000, desc=desc, leave=False, mininterval=0.5, file=self.stream,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]") \
            if self.on and tty else None
        self.t0 = self.last = time.perf_counter()
        self.fraction, self.text = 0.0, ""

    def update(self, fraction: float, text: str) -> None:
        """The call is ``fraction`` (0..1) of the way; ``text``: a short state (step, t, loss)."""
        self.fraction, self.text = fraction, text
        if not self.on:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(int(1000 * fraction) - self.bar.n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.t0
        eta = elapsed * (1 - self.fraction) / self.fraction if self.fraction > 0 else float("inf")
        return (f"[{self.desc}] {100 * self.fraction:.0f}% {self.text}, elapsed {_duration(elapsed)}, "
                f"ETA {_duration(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
