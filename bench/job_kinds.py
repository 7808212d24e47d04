"""The bench's own job kind, loaded only by the workers `bench.jobs` starts
(``JOB_EXTRA_MODULES=bench.job_kinds``, as the tests load theirs): never one of the service's
kinds (`jobs.discover()` without extra modules does not see it).

`bench.noop` does nothing and returns nothing, so a run of it costs exactly what the job engine
and the queue cost: the delivery, the claim (one conditional UPDATE), the lease keeper thread
and the settling UPDATE.
"""

from __future__ import annotations

from services.jobs import JobKind, JobRun, RetryPolicy

NOOP_KIND = "bench.noop"


def noop(run: JobRun) -> None:
    """Do nothing: the job's cost is the engine's and the queue's."""
    return None


JOB_KINDS = [JobKind(NOOP_KIND, noop, RetryPolicy(max_attempts=3, base_delay_seconds=0.1))]
