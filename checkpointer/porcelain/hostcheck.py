"""Whether this host can run a checkpoint: architecture, CPU features, CRIU version, runtime.
A restore asks before it downloads the memory pages, so an incompatible host refuses at once."""
from __future__ import annotations

from ..criu import probe
from ..errors import IncompatibleHost
from ..format.config import CheckpointConfig
from ..host import HostInfo, host_info


def incompatibilities(config: CheckpointConfig, here: HostInfo, criu_version: str) -> list[str]:
    """What keeps this host from running the checkpoint; empty when it can."""
    problems = []
    if config.host.arch != here.arch:
        problems.append(f"architecture: checkpoint is {config.host.arch or 'unknown'}, this host is {here.arch}")
    missing = sorted(set(config.host.cpu_flags) - set(here.cpu_flags))
    if missing and here.cpu_flags:
        problems.append(f"CPU features missing here: {' '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if probe.parse_version(criu_version) < probe.parse_version(config.criu_version)[:2]:
        problems.append(f"CRIU {criu_version} is older than the {config.criu_version} that took the checkpoint")
    if config.engine == "runc" and config.runtime != "runc":
        problems.append(f"the checkpoint is for the {config.runtime} runtime; this version restores into runc")
    return problems


def refuse_incompatible(config: CheckpointConfig, *, force: bool) -> None:
    """IncompatibleHost naming every problem, unless there is none or `force`."""
    problems = incompatibilities(config, host_info(), probe.version())
    if problems and not force:
        raise IncompatibleHost("this host cannot take the checkpoint: " + "; ".join(problems),
                               hint="--force tries anyway")
