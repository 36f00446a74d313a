"""Errors that are the user's to fix (the CLI prints them on one line and exits with code 2), and the signal that
stops a run."""

import contextlib
import signal
import threading
import time


class UsageError(Exception):
    """Bad input: an unknown name, a value of the wrong type or range, an unusable path."""


class FolderInUse(UsageError):
    """A folder another process is writing, or that already holds another run's records."""


class BadData(UsageError, ValueError):
    """Data a computation cannot use correctly (labels outside a loss's convention, NaN inputs): refused before the
    first step."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) received: handled like Ctrl-C, so that every run records ``interrupted``."""


_STOPS: list[int | None] = []  # per open signals_interrupt block (innermost last): the signal that stopped it


def _stopped() -> int | None:
    """The signal that stopped the innermost :func:`signals_interrupt` block (None: not stopped, or no block)."""
    return _STOPS[-1] if _STOPS else None


def _exception(signum: int) -> BaseException:
    """What signal ``signum`` raises: ``KeyboardInterrupt`` for SIGINT, else :class:`Interrupted`; the innermost
    :func:`signals_interrupt` block now remembers it."""
    if _STOPS and _STOPS[-1] is None:
        _STOPS[-1] = signum
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` and SIGINT ``KeyboardInterrupt`` (the command
    line and sweep workers); the previous handlers are restored after it. Outside the main thread it does nothing.

    Only the first signal raises at once: the process is then stopping, and a repeat is ignored so that it cannot
    cut short the writing of the final statuses (a dying multi-threaded parent sends PR_SET_PDEATHSIG once per
    thread; an impatient second Ctrl-C). The stop is remembered: if its exception was swallowed (raised inside a
    weakref callback, Python prints "Exception ignored" and goes on), the next training loop (:class:`Deferred`)
    raises it again. SIGKILL still ends a stop that hangs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _stopped() is None:
            raise _exception(signum)

    # Ctrl-C raises KeyboardInterrupt even where the process was started with SIGINT ignored (a background job of a
    # script inherits that): a sweep or run then stops as asked instead of running on
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    _STOPS.append(None)
    try:
        yield
    finally:
        _STOPS.pop()
        for sig, h in old.items():
            signal.signal(sig, h)


class Deferred:
    """While it is installed (from its creation to :meth:`restore`), SIGINT, SIGTERM, SIGHUP and SIGUSR2 are only
    noted in ``pending`` (another one acts at once); the caller acts on them with :meth:`act` where it can stop
    cleanly (the training loop, after writing its checkpoint). A stop its :func:`signals_interrupt` block already
    has is pending from the start. Outside the main thread nothing is deferred."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)

    def __init__(self):
        self.pending: int | None = _stopped()
        self.noted = 0.0  # when (time.monotonic()) it was noted
        self.previous: dict = {}
        self.at_once = False  # set by the caller around long work whose interruption loses nothing
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._note) for sig in self.SIGNALS}

    def _note(self, signum, frame):
        if _stopped() is not None:
            return  # already stopping
        # asked again (not the same signal within a second: a dying parent's PR_SET_PDEATHSIG, once per thread),
        # or where stopping at once loses nothing: stop now
        again = self.pending is not None and not (signum == self.pending and time.monotonic() - self.noted < 1.0)
        self.pending, self.noted = signum, time.monotonic()
        if again or self.at_once:
            self.act()

    def act(self) -> None:
        """Act on the pending signal: SIGINT, SIGTERM and SIGHUP raise (``KeyboardInterrupt``, :class:`Interrupted`)
        and stay pending, raised again at the next call if the exception was swallowed; SIGUSR2 (SLURM's warning
        before a time limit or pre-emption) is handed to the handler installed before (submitit's, which requeues
        the job and exits), or else ignored: the caller's checkpoint is written. If that handler raises (submitit
        declining to requeue a job that timed out too often), :class:`Interrupted` is raised instead: the run stops
        as interrupted, to be resumed from its checkpoint, not failed."""
        signum = self.pending
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            raise _exception(signum)
        self.pending = None
        old = self.previous.get(signum)
        if callable(old):
            try:
                old(signum, None)
            except Exception as e:
                raise Interrupted(f"{signal.Signals(signum).name} ({e})") from None

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def stopped_by(e: BaseException) -> tuple[str, str]:
    """(final status, reason) of a run or job that the exception ``e`` ended: ``interrupted`` for Ctrl-C, the
    signals above and an exit of the process (e.g. submitit's after requeueing a pre-empted job), ``failed`` for
    anything else. A signal that C code turned into another error (an extension module's import raising
    ImportError from it) still reads ``interrupted``."""
    cause = e
    for _ in range(20):  # the chain of causes, bounded
        if cause is None or isinstance(cause, KeyboardInterrupt):
            break
        cause = cause.__cause__ or cause.__context__
    e = cause if isinstance(cause, KeyboardInterrupt) else e
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", f"interrupted by {e}" if str(e) else "interrupted by SIGINT (Ctrl-C)"
    if isinstance(e, SystemExit):
        return "interrupted", f"the process exited (code {e.code}), e.g. a SLURM job requeued"
    return "failed", f"{type(e).__name__}: {e}"
