"""Where `ckpt hooks install` puts things, on the host or under a private prefix.

Without a prefix: the scripts in /usr/local/libexec/ckpt, the config in /etc/ckpt, the action
script line in runc's default CRIU config /etc/criu/runc.conf, the OCI hook entry in
/etc/containers/oci/hooks.d. With `--prefix P` every one of these lives under P instead
(P/libexec/ckpt, P/etc/ckpt, P/etc/criu/runc.conf, P/etc/containers/oci/hooks.d), which is
how tests install hooks without touching the host's /etc.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .settings import CONFIG_NAME, DEFAULT_CONFIG_DIR

ACTION = "criu-action"
OCI_HOOK = "oci-hook"
CRIU_CONF = "criu.conf"
OCI_HOOK_JSON = "ckpt-restore-from.json"


def templates() -> Path:
    """hooks/*.in: beside the package in a source tree (or an editable install); installed from a
    wheel, under the data prefix, where pyproject.toml's data-files put them. Looked up when hooks
    are installed, not on every start of the command line that imports this module."""
    import sysconfig

    source = Path(__file__).resolve().parents[2] / "hooks"
    if (source / "criu-action.in").is_file():
        return source
    return Path(sysconfig.get_path("data")) / "share" / "ckpt" / "hooks"


@dataclass(frozen=True, slots=True)
class InstallPaths:
    libexec: Path
    config_dir: Path
    runc_conf: Path | None  # the CRIU config runc reads for every container; None: leave it alone
    hooks_dir: Path | None  # the oci-hooks.d directory; None: no OCI hook

    @classmethod
    def make(cls, prefix: Path | None = None, *, config_dir: Path | None = None, runc_conf: Path | None = None,
             hooks_dir: Path | None = None, global_criu: bool = True, oci_hook: bool = True) -> InstallPaths:
        if prefix is None:
            base = cls(Path("/usr/local/libexec/ckpt"), DEFAULT_CONFIG_DIR, Path("/etc/criu/runc.conf"),
                       Path("/etc/containers/oci/hooks.d"))
        else:
            prefix = Path(prefix).absolute()
            base = cls(prefix / "libexec" / "ckpt", prefix / "etc" / "ckpt", prefix / "etc" / "criu" / "runc.conf",
                       prefix / "etc" / "containers" / "oci" / "hooks.d")
        return cls(libexec=base.libexec, config_dir=Path(config_dir).absolute() if config_dir else base.config_dir,
                   runc_conf=(Path(runc_conf).absolute() if runc_conf else base.runc_conf) if global_criu else None,
                   hooks_dir=(Path(hooks_dir).absolute() if hooks_dir else base.hooks_dir) if oci_hook else None)

    @property
    def config(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def action(self) -> Path:
        return self.libexec / ACTION

    @property
    def oci_hook(self) -> Path:
        return self.libexec / OCI_HOOK

    @property
    def criu_conf(self) -> Path:
        return self.config_dir / CRIU_CONF

    @property
    def oci_hook_json(self) -> Path | None:
        return self.hooks_dir / OCI_HOOK_JSON if self.hooks_dir else None


def config_path(prefix: Path | None = None, config_dir: Path | None = None) -> Path:
    """The hooks config file that `install` with these options writes (status and retry read it)."""
    return InstallPaths.make(prefix, config_dir=config_dir).config
