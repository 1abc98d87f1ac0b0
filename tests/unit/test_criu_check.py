"""`ckpt check` findings about CRIU and the network: a CRIU too old for the kernel's sockets, and a
host with no network lock CRIU can use."""
from __future__ import annotations

from checkpointer.criu import config, probe
from checkpointer.host import HostInfo
from checkpointer.porcelain.check import _criu_finding, network_lock_finding


def host(kernel: str) -> HostInfo:
    return HostInfo(arch="amd64", kernel=kernel, cgroup_version=1, cpu_flags=())


def criu(version: str) -> probe.CriuInfo:
    return probe.CriuInfo(path="/usr/sbin/criu", version=version, check_ok=True, check_output="Looks good.")


def test_criu_older_than_4_2_on_kernel_6_16_and_later_cannot_take_sockets():
    finding = _criu_finding(criu("4.1.1"), host("6.18.44-fc-v1098"))
    assert not finding.ok
    assert "containers with network sockets cannot be checkpointed" in finding.detail
    assert "CRIU >= 4.2" in finding.hint and "scripts/setup.sh" in finding.hint
    assert not _criu_finding(criu("4.1"), host("6.16.0")).ok


def test_the_same_criu_is_fine_on_an_older_kernel_and_4_2_everywhere():
    assert _criu_finding(criu("4.1.1"), host("6.15.9")).ok
    assert _criu_finding(criu("4.2"), host("6.18.1")).ok
    assert _criu_finding(criu("4.2.1"), host("6.18.44-fc-v1098")).ok
    assert not _criu_finding(criu("3.17.1"), host("6.1.0")).ok  # too old anywhere
    assert probe.sockets_work("4.1.1", "5.10.0-28-amd64") and not probe.sockets_work("4.1.1", "6.16.3")


def test_network_lock_iptables_nftables_or_neither():
    def which(*present: str):  # noqa: ANN202
        return lambda name: f"/usr/sbin/{name}" if name in present else None

    both = network_lock_finding(which(*config.IPTABLES_TOOLS), nftables=True)
    assert both.ok and both.detail == "iptables (/usr/sbin/iptables-restore)"
    nft = network_lock_finding(which(), nftables=True)
    assert nft.ok and nft.detail.startswith("nftables") and "iptables-restore" in nft.detail
    neither = network_lock_finding(which("iptables"), nftables=False)
    assert not neither.ok
    assert "network namespace of their own cannot be checkpointed" in neither.detail
    assert "install iptables" in neither.hint
