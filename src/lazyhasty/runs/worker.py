"""Worker process of a local sweep: ``python -m lazyhasty.runs.worker`` runs prepared jobs one after another.

It reads one job folder per line on stdin and, after each job, writes the job's final status as one line to the
stdout it was started with (a pipe to the sweep). While a job runs, stdout and stderr go to its ``worker.log``.
One process runs many jobs, so a sweep of small cells pays for Python and torch's import once per worker, not once
per cell; between jobs torch.compile's caches are reset, so every job compiles (or not) as it would in a process of
its own. A job that fails is recorded as failed and the worker goes on; a signal ends the worker (its job says
interrupted).
"""

import os
import sys

from ..errors import signals_interrupt, stopped_by
from .sweep import run_job


def _into(fd: int) -> None:
    """Point stdout and stderr (the file descriptors, so that C code's output follows too) at ``fd``."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def serve() -> int:
    done, between = os.dup(1), os.dup(2)  # the pipe to the sweep; the sweep's stderr (what is said between jobs)
    for line in sys.stdin:
        job_dir = line.strip()
        log = os.open(os.path.join(job_dir, "worker.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                      0o644)  # never through a link
        _into(log)
        os.close(log)
        try:
            status = run_job(job_dir)
        except KeyboardInterrupt as e:  # job.json already says interrupted
            print(f"interrupted: {str(e) or 'SIGINT'}", file=sys.stderr)
            return 130
        except Exception as e:
            import traceback

            traceback.print_exc()  # into the job's worker.log; job.json already says failed (or interrupted)
            status = stopped_by(e)[0]
            if status == "interrupted":  # a signal that C code turned into another error: end as for a signal
                return 130
        _into(between)
        if "torch._dynamo" in sys.modules:  # the next job compiles as a fresh process would (no cache limit reached)
            sys.modules["torch._dynamo"].reset()
        os.write(done, f"{status}\n".encode())
    return 0


if __name__ == "__main__":
    try:
        with signals_interrupt():
            code = serve()
    except KeyboardInterrupt:  # a signal between two jobs: nothing is running
        code = 130
    sys.exit(code)
