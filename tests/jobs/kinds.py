"""The tests' own job kinds (loaded by a worker through JOB_EXTRA_MODULES=tests.jobs.kinds).

`test.record` leaves its traces in the folder its payload names: one line per attempt in
``runs.log`` (job id, attempt, worker pid) and its effect, made idempotently: the file
``effect-<job id>`` created only if absent. With ``hang_on_attempt`` it makes its effect and
then hangs on that attempt (for a test to kill its worker mid-run).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from services.jobs import JobKind, JobRun, RetryPolicy

HANG_SECONDS = 60.0


def record(run: JobRun) -> dict[str, Any]:
    folder = Path(run.payload["dir"])
    with (folder / "runs.log").open("a") as log:
        log.write(f"{run.job_id} {run.attempt} {os.getpid()}\n")
    with contextlib.suppress(FileExistsError):  # made by an earlier attempt: the effect happens once
        os.close(os.open(folder / f"effect-{run.job_id}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    if run.payload.get("hang_on_attempt") == run.attempt:
        time.sleep(HANG_SECONDS)  # killed meanwhile
    run.checkpoint(1, 1, "recorded")
    return {"attempt": run.attempt}


JOB_KINDS = [JobKind("test.record", record, RetryPolicy(max_attempts=3, base_delay_seconds=0.1))]
