"""Errors that are the user's to fix (the CLI prints them on one line and exits with code 2), and the signal that
stops a run."""

import contextlib
import signal
import threading


class UsageError(Exception):
    """Bad input: an unknown name, a value of the wrong type or range, an unusable path."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) received: handled like Ctrl-C, so that every run records ``interrupted``."""


@contextlib.contextmanager
def signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` (the command line and sweep workers); the
    previous handlers are restored after it. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def stopped_by(e: BaseException) -> tuple[str, str]:
    """(final status, reason) of a run or job that the exception ``e`` ended: ``interrupted`` for Ctrl-C and the
    signals above, ``failed`` for anything else."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", f"interrupted by {e}" if str(e) else "interrupted by SIGINT (Ctrl-C)"
    return "failed", f"{type(e).__name__}: {e}"
