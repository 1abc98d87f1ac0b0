"""`ckpt hooks install` / `uninstall`: write the hooks from hooks/*.in, and take them away again.

The scripts name the interpreter that ran the install (so the hooks find ckpt's virtualenv
whatever the runtime's PATH is) and this copy of ckpt's source. The config file records what
was written, so that uninstall removes exactly that and leaves the spool alone unless asked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from .. import atomic
from ..errors import MissingDependency, UsageError
from .paths import InstallPaths, templates
from .settings import HookSettings
from .spool import Spool

BEGIN = "# >>> ckpt hooks (written by `ckpt hooks install`; `ckpt hooks uninstall` removes it)"
END = "# <<< ckpt hooks"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Installed:
    config: Path
    files: tuple[Path, ...]
    runc_conf: Path | None
    spool: Path


def install(paths: InstallPaths, settings: HookSettings, *, python: str | None = None) -> Installed:
    """Install the hooks at `paths` with `settings` (its python is replaced by `python`, default
    the running interpreter). Installing again over an installation replaces it."""
    python = python or sys.executable
    _check_python(python)
    values = {"PYTHON": python, "PKGROOT": str(PACKAGE_ROOT), "CONFIG": str(paths.config),
              "ACTION": str(paths.action), "OCI_HOOK": str(paths.oci_hook), "SELF": str(paths.criu_conf)}
    if any("'" in v or "\n" in v for v in values.values()):
        raise UsageError("install paths may not contain quotes or newlines")
    written = [_render("criu-action.in", paths.action, values, 0o755),
               _render("oci-hook.in", paths.oci_hook, values, 0o755),
               _render("criu.conf.in", paths.criu_conf, values, 0o644)]
    if paths.oci_hook_json:
        written.append(_render("ckpt-restore-from.json.in", paths.oci_hook_json, values, 0o644))
    created_runc_conf = False
    if paths.runc_conf:
        created_runc_conf = add_block(paths.runc_conf, f"action-script {paths.action}")
        previous = _previous(paths.config)
        created_runc_conf = created_runc_conf or previous.get("runcConfCreated", False)
    record = {"files": [str(p) for p in written], "runcConf": str(paths.runc_conf) if paths.runc_conf else None,
              "runcConfCreated": created_runc_conf}
    settings = replace(settings, python=python, installed=record)
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    _write(paths.config, json.dumps(settings.to_json(), indent=2) + "\n", 0o600)
    Spool(settings.spool).ensure()
    return Installed(paths.config, tuple(written), paths.runc_conf, settings.spool)


def uninstall(config: Path, *, purge: bool = False) -> list[Path]:
    """Remove what the install recorded in `config` (and the spool too with `purge`)."""
    settings = HookSettings.load(config)
    if settings.source is None:
        raise UsageError(f"no hooks are installed with the config {config}",
                         hint="give the same --prefix/--config-dir as to `ckpt hooks install`")
    removed = []
    record = settings.installed
    for name in record.get("files", []):
        path = Path(name)
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append(path)
    if record.get("runcConf"):
        conf = Path(record["runcConf"])
        if remove_block(conf, delete_if_empty=bool(record.get("runcConfCreated"))):
            removed.append(conf)
    if purge and settings.spool.exists():
        shutil.rmtree(settings.spool)
        removed.append(settings.spool)
    config.unlink()
    removed.append(config)
    for name in record.get("files", []):
        _remove_empty(Path(name).parent)
    return removed


def add_block(conf: Path, line: str) -> bool:
    """Put `line` into CRIU config `conf` inside ckpt's marked block (replacing an old block);
    True if the file did not exist before."""
    created = not conf.exists()
    text = "" if created else conf.read_text()
    kept = _without_block(text)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    conf.parent.mkdir(parents=True, exist_ok=True)
    _write(conf, f"{kept}{BEGIN}\n{line}\n{END}\n")
    return created


def remove_block(conf: Path, *, delete_if_empty: bool) -> bool:
    """Take ckpt's block out of `conf`; True if the file changed or went."""
    if not conf.exists():
        return False
    text = conf.read_text()
    kept = _without_block(text)
    if kept == text:
        return False
    if delete_if_empty and not kept.strip():
        conf.unlink()
    else:
        _write(conf, kept)
    return True


def has_block(conf: Path, line: str) -> bool:
    try:
        text = conf.read_text()
    except OSError:
        return False
    return BEGIN in text and line in text


def _without_block(text: str) -> str:
    out, inside = [], False
    for ln in text.splitlines(keepends=True):
        if ln.rstrip("\n") == BEGIN:
            inside = True
        elif inside and ln.rstrip("\n") == END:
            inside = False
        elif not inside:
            out.append(ln)
    return "".join(out)


def _render(template: str, dest: Path, values: dict[str, str], mode: int) -> Path:
    source = templates() / template
    try:
        text = source.read_text()
    except OSError:
        raise MissingDependency(f"the hook template {source} is missing",
                                hint="install the hooks from a ckpt source tree (its hooks/ directory)") from None
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write(dest, text, mode)
    return dest


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    atomic.write_bytes(path, text.encode(), mode=mode)


def _previous(config: Path) -> dict:
    try:
        return HookSettings.load(config).installed if config.exists() else {}
    except UsageError:
        return {}


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _check_python(python: str) -> None:
    """The hooks run `python -I`: make sure that interpreter imports this ckpt and its dependencies."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import checkpointer.hooks.publisher, checkpointer.hooks.action, zstandard, requests")
    res = subprocess.run([python, "-I", "-c", code, str(PACKAGE_ROOT)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise MissingDependency(f"{python} cannot run the hooks: {res.stderr.strip().splitlines()[-1:]}",
                                hint="install with the Python of ckpt's virtualenv (e.g. .venv/bin/python -m "
                                     "checkpointer hooks install)")
