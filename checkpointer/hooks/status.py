"""`ckpt hooks status`: is the installation whole, and where is every job (one view model)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .install import has_block
from .job import ACTIVE, FAILED, PUBLISHED, Job
from .settings import HookSettings
from .spool import Spool

STALLED = "stalled"  # shown for an active job that no publisher works on (it died, or the host rebooted)
STALL_AFTER = 30.0  # seconds: a job just spooled may not have its publisher running yet


@dataclass(frozen=True, slots=True)
class InstallView:
    config: str
    installed: bool
    python: str
    spool: str
    home: str
    files: tuple[tuple[str, bool], ...]  # (path, present)
    runc_conf: str | None
    runc_conf_ok: bool


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    state: str  # the job's state, or "stalled"
    running: bool
    container: str
    engine: str
    destination: str
    created: str
    updated: str
    digest: str
    size: int
    attempts: int
    hook_ms: int
    error: str
    hint: str
    last: str  # the latest event of its history


@dataclass(frozen=True, slots=True)
class StatusView:
    install: InstallView
    jobs: tuple[JobView, ...]

    def count(self, state: str) -> int:
        return sum(1 for j in self.jobs if j.state == state)

    def summary(self) -> dict[str, int]:
        """Jobs by outcome: pending (spooled, packing, publishing), stalled, failed, published."""
        out = {"pending": sum(1 for j in self.jobs if j.state in ACTIVE)}
        for state in (STALLED, FAILED, PUBLISHED):
            out[state] = self.count(state)
        return out

    def to_json(self) -> dict:
        return {"install": asdict(self.install), "jobs": [asdict(j) for j in self.jobs], "summary": self.summary()}


def status(config: Path) -> StatusView:
    settings = HookSettings.load(config)
    record = settings.installed
    files = tuple((name, Path(name).exists()) for name in record.get("files", []))
    runc_conf = record.get("runcConf")
    action = next((name for name in record.get("files", []) if name.endswith("criu-action")), "")
    install = InstallView(config=str(config), installed=settings.source is not None, python=settings.python,
                          spool=str(settings.spool), home=str(settings.home), files=files, runc_conf=runc_conf,
                          runc_conf_ok=bool(runc_conf) and has_block(Path(runc_conf), f"action-script {action}"))
    spool = Spool(settings.spool)
    return StatusView(install, tuple(job_view(spool, job) for job in spool.jobs()))


def job_view(spool: Spool, job: Job) -> JobView:
    running = job.state in ACTIVE and spool.busy(job.id)
    state = job.state
    if state in ACTIVE and not running and _age(job.updated) > STALL_AFTER:
        state = STALLED
    return JobView(id=job.id, state=state, running=running, container=job.container_name or job.container_id,
                   engine=job.engine, destination=job.destination, created=job.created, updated=job.updated,
                   digest=job.digest, size=job.size, attempts=job.attempts, hook_ms=job.hook_ms, error=job.error,
                   hint=job.hint, last=job.history[-1][1] if job.history else "")


def _age(stamp: str) -> float:
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - when).total_seconds()


def spool_of(config: Path) -> Spool:
    return Spool(HookSettings.load(config).spool)
