"""Worker process of a local sweep: ``python -m lazyhasty.runs.worker JOB_DIR`` runs one prepared job."""

import sys

from .sweep import run_job

if __name__ == "__main__":
    try:
        run_job(sys.argv[1])
    except Exception:
        import traceback

        traceback.print_exc()  # into the job's worker.log; job.json already says failed
        sys.exit(1)
