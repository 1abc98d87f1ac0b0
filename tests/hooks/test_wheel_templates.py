"""Installed from a wheel (no source tree beside the package), ckpt still finds the hook templates:
the wheel carries them as data files, and `ckpt hooks install` renders them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_wheel_install_finds_the_hook_templates(tmp_path):
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    src = tmp_path / "src"
    for name in filter(None, tracked.decode().split("\0")):
        if name.startswith(("checkpointer/", "hooks/")) or name in ("pyproject.toml", "README.md"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("checkpointer-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    code = ("import checkpointer.hooks.paths as p, sys; "
            "assert 'site-packages' in p.__file__, p.__file__; "
            "print(p.templates()); sys.exit(0 if (p.templates() / 'criu-action.in').is_file() else 3)")
    shown = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", code], capture_output=True, text=True,
                           cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr + shown.stdout
    assert Path(shown.stdout.strip()).is_relative_to(venv)
