"""`ckpt hooks retry` and `ckpt hooks drop`: act on jobs that failed or stalled."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import AlreadyExists, CkptError
from .job import FAILED, Job
from .publisher import run
from .settings import HookSettings
from .spool import Spool
from .status import STALLED, job_view


@dataclass(frozen=True, slots=True)
class Outcome:
    job_id: str
    job: Job | None
    error: CkptError | None = None


def retry(settings: HookSettings, job_ids: list[str] | None = None) -> list[Outcome]:
    """Publish the named jobs again (default: every failed or stalled one), in the foreground
    and once each: the caller sees the result."""
    spool = Spool(settings.spool)
    if not job_ids:
        job_ids = [j.id for j in spool.jobs() if j.state == FAILED or job_view(spool, j).state == STALLED]
    outcomes = []
    for job_id in job_ids:
        try:
            outcomes.append(Outcome(job_id, run(spool, job_id, settings, delays=())))
        except CkptError as exc:
            outcomes.append(Outcome(job_id, None, exc))
    return outcomes


def drop(settings: HookSettings, job_id: str) -> Job:
    """Forget a job and delete what it holds (images, packed checkpoint)."""
    spool = Spool(settings.spool)
    job = spool.load(job_id)
    with spool.lock(job_id) as mine:
        if not mine:
            raise AlreadyExists(f"a publisher is working on hook job {job_id} right now",
                                hint="wait for it, or let it fail, then drop the job")
        spool.remove(job_id)
    return job
