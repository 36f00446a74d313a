"""Worker process of a local sweep: ``python -m lazyhasty.runs.worker JOB_DIR`` runs one prepared job."""

import sys

from ..errors import signals_interrupt
from .sweep import run_job

if __name__ == "__main__":
    try:
        with signals_interrupt():
            run_job(sys.argv[1])
    except KeyboardInterrupt as e:  # job.json already says interrupted
        print(f"interrupted: {str(e) or 'SIGINT'}", file=sys.stderr)
        sys.exit(130)
    except Exception:
        import traceback

        traceback.print_exc()  # into the job's worker.log; job.json already says failed
        sys.exit(1)
