"""Real CRIU + runc + a real registry: a file capability and a user.* attribute in the container's
root filesystem are still there after the container was saved, wiped and restored."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import nullcontext
from pathlib import Path

import pytest
from support.registry_server import RegistryServer
from support.sample import ckpt, make_bundle, read_state, start, wait_for


def _getcap(path: Path) -> str:
    out = subprocess.run(["getcap", str(path)], capture_output=True, text=True, check=True).stdout
    return out.replace(str(path), "").strip()


@pytest.mark.parametrize("where", ["store", "registry"])
def test_capabilities_and_user_attributes_survive_a_migration(bundle_template, tmp_path, runc_root, ckpt_home,
                                                              container_name, where):
    if not shutil.which("setcap") or not shutil.which("getcap"):
        pytest.skip("needs setcap/getcap (Debian package libcap2-bin)")
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    rootfs = bundle / "rootfs"
    shutil.copy2(rootfs / "bin" / "busybox", rootfs / "bin" / "pinger")
    subprocess.run(["setcap", "cap_net_raw+ep", str(rootfs / "bin" / "pinger")], check=True)
    assert _getcap(rootfs / "bin" / "pinger") == "cap_net_raw=ep"
    (rootfs / "etc" / "marked").write_text("a file with a user attribute\n")
    os.setxattr(rootfs / "etc" / "marked", "user.ckpt.test", b"carried \xff along")
    os.setxattr(rootfs / "etc", "user.on-a-dir", b"yes")

    start(runc_root, bundle, container_name)
    before = wait_for(rootfs, lambda s: s.counter >= 3)
    with RegistryServer(tmp_path, auth="none") if where == "registry" else nullcontext() as reg:
        ref = f"{reg.host}/xattrs/{container_name}:v1" if reg else f"{container_name}:v1"
        tls = ["--ca-dir", str(reg.cert_dir)] if reg and getattr(reg, "cert_dir", None) else []
        ckpt("save", "--runc-root", str(runc_root), container_name, ref, *tls, home=ckpt_home, check=True)
        at_save = read_state(rootfs)
        shutil.rmtree(bundle)
        if reg:
            shutil.rmtree(ckpt_home)
            ckpt_home.mkdir()
        out = ckpt("restore", "--runc-root", str(runc_root), ref, *tls, "--json", home=ckpt_home, check=True)

    restored = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    after = wait_for(restored, lambda s: s.counter > at_save.counter)
    assert after.nonce == before.nonce
    assert _getcap(restored / "bin" / "pinger") == "cap_net_raw=ep"
    assert os.getxattr(restored / "etc" / "marked", "user.ckpt.test") == b"carried \xff along"
    assert os.getxattr(restored / "etc", "user.on-a-dir") == b"yes"
    assert _getcap(restored / "bin" / "busybox") == ""  # only the file that had one

