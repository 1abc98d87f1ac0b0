"""The spool: where checkpoints wait between the runtime's dump and their publication.

    SPOOL/hooks.log                  what the hooks did (also sent to syslog)
    SPOOL/jobs/ID/job.json           the job record (job.py), replaced atomically
    SPOOL/jobs/ID/lock               flock()ed by the publisher working on the job
    SPOOL/jobs/ID/images/            the CRIU images, hardlinked or copied at post-dump
    SPOOL/jobs/ID/spec.json          the container's config.json
    SPOOL/jobs/ID/layout/            the packed checkpoint (an OCI layout), kept until published

Memory images hold the container's secrets, so everything here is readable by root only.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import atomic
from ..errors import NotFound
from .job import PUBLISHED, Job


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def log_path(self) -> Path:
        return self.root / "hooks.log"

    def job_dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise NotFound(f"no hook job {job_id!r}")
        return self.jobs_dir / job_id

    def ensure(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def claim(self, job_id: str) -> Path | None:
        """Make the job's directory; None if it exists (CRIU 4.1 under runc calls each action
        script twice, and the second post-dump call must do nothing)."""
        self.ensure()
        path = self.job_dir(job_id)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            return None
        return path

    def save(self, job: Job) -> None:
        atomic.write_bytes(self.job_dir(job.id) / "job.json", json.dumps(job.to_json(), indent=2).encode())

    def load(self, job_id: str) -> Job:
        try:
            return Job.from_json(json.loads((self.job_dir(job_id) / "job.json").read_text()))
        except FileNotFoundError:
            raise NotFound(f"no hook job {job_id!r} in {self.root}",
                           hint="`ckpt hooks status` lists the jobs") from None
        except (ValueError, TypeError) as exc:
            raise NotFound(f"the record of hook job {job_id!r} is unreadable: {exc}") from None

    def jobs(self) -> list[Job]:
        if not self.jobs_dir.is_dir():
            return []
        found = []
        for entry in sorted(os.listdir(self.jobs_dir)):
            try:
                found.append(self.load(entry))
            except NotFound:
                continue  # claimed a moment ago, record not written yet
        return found

    @contextmanager
    def lock(self, job_id: str) -> Iterator[bool]:
        """Hold the job's lock while the block runs; yields False (and holds nothing) if another
        process holds it."""
        path = self.job_dir(job_id)
        if not path.is_dir():
            raise NotFound(f"no hook job {job_id!r} in {self.root}", hint="`ckpt hooks status` lists the jobs")
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def busy(self, job_id: str) -> bool:
        """A publisher is working on the job right now."""
        try:
            with self.lock(job_id) as mine:
                return not mine
        except (OSError, NotFound):
            return False

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def prune(self, keep: int) -> int:
        """Forget all but the newest `keep` published jobs; returns how many went."""
        published = [j for j in self.jobs() if j.state == PUBLISHED]
        old = sorted(published, key=lambda j: j.updated)[:max(0, len(published) - keep)]
        for job in old:
            self.remove(job.id)
        return len(old)
