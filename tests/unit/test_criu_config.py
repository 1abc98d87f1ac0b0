"""The per-run CRIU config (checkpointer/criu/config.py): which network lock, which action script,
written privately; and the wrapper that carries it through Podman."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from checkpointer.criu import config, netns
from checkpointer.errors import MissingDependency


def tools(*present: str):  # noqa: ANN201
    return lambda name: f"/usr/sbin/{name}" if name in present else None


def test_iptables_present_means_criu_default_and_no_nftables_probe():
    def no_probe() -> bool:
        raise AssertionError("probed nftables although iptables is there")

    assert config.network_lock(needs_lock=True, which=tools(*config.IPTABLES_TOOLS), has_nftables=no_probe) is None


def test_without_iptables_nftables_is_used_or_the_save_stops_with_a_hint():
    assert config.network_lock(needs_lock=True, which=tools("iptables"), has_nftables=lambda: True) == "nftables"
    with pytest.raises(MissingDependency) as err:
        config.network_lock(needs_lock=True, which=tools("iptables"), has_nftables=lambda: False)
    assert "iptables-restore, ip6tables-restore, ip6tables" in str(err.value)
    assert "install iptables" in err.value.hint and "nftables" in err.value.hint
    assert err.value.exit_code == 12


def test_no_lock_needed_no_question_asked():
    assert config.network_lock(needs_lock=False, which=tools(), has_nftables=lambda: False) is None


def test_render_and_private_write(tmp_path: Path):
    script = tmp_path / "a b#c" / "netns.sh"
    text = config.CriuConfig(network_lock="nftables", action_script=script).render()
    assert text.splitlines()[1:] == ["network-lock nftables", f'action-script "{script}"']
    assert config.CriuConfig(action_script=Path("/run/x/s.sh")).render().splitlines()[1] == "action-script /run/x/s.sh"
    assert config.write(tmp_path, config.CriuConfig()) is None
    written = config.write(tmp_path, config.CriuConfig(network_lock="nftables"))
    assert written == tmp_path / "criu.conf" and "network-lock nftables\n" in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert config.environment(written) == {"CRIU_CONFIG_FILE": str(written)} and config.environment(None) == {}
    with pytest.raises(ValueError):
        config.CriuConfig(action_script=Path('/tmp/with"quote')).render()


def test_never_writes_through_a_planted_link_or_over_a_file(tmp_path: Path):
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "criu.conf").symlink_to(target)
    with pytest.raises(FileExistsError):
        config.write(tmp_path, config.CriuConfig(network_lock="nftables"))
    assert target.read_text() == "keep"


def test_restore_config_has_the_loopback_script_for_a_private_namespace_only(tmp_path: Path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*config.IPTABLES_TOOLS, "ip", "nsenter"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    private = tmp_path / "private"
    private.mkdir()
    state = netns.NetworkState(netns.PRIVATE, netns.Loopback(addresses=(netns.Address("10.0.0.1/32"),)))
    conf = config.restore_config(private, state, tcp_established=False)
    assert conf is not None and conf.read_text().splitlines()[1:] == [f"action-script {private / 'netns.sh'}"]
    script = (private / "netns.sh").read_text()
    assert stat.S_IMODE((private / "netns.sh").stat().st_mode) == 0o700
    assert f"exec {bin_dir / 'nsenter'} -t" in script and "address replace 10.0.0.1/32 dev lo" in script
    for other in (netns.NetworkState(netns.JOINED), netns.NetworkState(netns.HOST), None,
                  netns.NetworkState(netns.PRIVATE, netns.Loopback(up=False))):
        assert config.restore_config(tmp_path, other, tcp_established=True) is None  # iptables is on PATH here
    assert not (tmp_path / "criu.conf").exists()


def test_the_wrapper_starts_criu_with_the_config(tmp_path: Path, monkeypatch):
    """Podman runs runc with only PATH and XDG_RUNTIME_DIR; runc --criu WRAPPER carries the config."""
    odd, work = tmp_path / "it's here", tmp_path / "work dir"
    odd.mkdir()
    work.mkdir()
    fake = odd / "criu"  # stands in for CRIU: tells what it was started with
    fake.write_text('#!/bin/sh\necho "$CRIU_CONFIG_FILE|$*"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{odd}{os.pathsep}{os.environ['PATH']}")
    conf = config.write(work, config.CriuConfig(network_lock="nftables"))
    wrapper = config.criu_wrapper(work, conf)
    out = subprocess.run([str(wrapper), "swrk", "3"], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    assert out == f"{conf}|swrk 3\n"
