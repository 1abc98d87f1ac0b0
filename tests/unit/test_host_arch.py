"""The one architecture table (checkpointer/host.py): machine names, OCI names, CRIU's names."""
from __future__ import annotations

import platform

import pytest

from checkpointer import host
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.model import Descriptor, Index
from checkpointer.registry.pull import choose_manifest


@pytest.mark.parametrize("machine, oci, plat", [
    ("x86_64", "amd64", "linux/amd64"), ("amd64", "amd64", "linux/amd64"),
    ("aarch64", "arm64", "linux/arm64"), ("arm64", "arm64", "linux/arm64"),
    ("armv7l", "arm", "linux/arm/v7"), ("armv6l", "arm", "linux/arm/v6"),
    ("i686", "386", "linux/386"), ("i386", "386", "linux/386"),
    ("ppc64le", "ppc64le", "linux/ppc64le"), ("s390x", "s390x", "linux/s390x"),
    ("riscv64", "riscv64", "linux/riscv64"), ("loongarch64", "loong64", "linux/loong64"),
    ("SPARC64", "sparc64", "linux/sparc64"),  # unknown: as it is, in lower case
])
def test_machine_names(machine, oci, plat):
    assert host.oci_arch(machine) == oci
    assert host.oci_platform(machine) == plat


def test_this_host():
    assert host.arch() == host.oci_arch(platform.machine())
    assert host.oci_platform() == host.oci_platform(platform.machine())
    assert host.host_info().arch == host.arch()


def test_every_criu_machine_type_has_an_oci_name():
    from pycriu.images import core_pb2  # CRIU's own list of machine types

    names = [name for name, _ in core_pb2.core_entry.march.items() if name != "UNKNOWN"]
    assert names
    known = {a.oci for a in host.ARCHES}
    for name in names:
        assert host.criu_arch(name) in known, name
    assert host.criu_arch("X86_64") == "amd64" and host.criu_arch("AARCH64") == "arm64"
    assert host.criu_arch("PPC64") == "ppc64le" and host.criu_arch("S390") == "s390x"
    assert host.criu_arch("NEW_ONE") == "new_one"


def test_the_table_names_each_thing_once():
    machines = [m for a in host.ARCHES for m in a.machines]
    assert len(machines) == len(set(machines))
    assert len({a.oci for a in host.ARCHES}) == len(host.ARCHES)
    criu = [a.criu for a in host.ARCHES if a.criu]
    assert len(criu) == len(set(criu))


def test_a_pull_picks_this_hosts_platform_from_the_table():
    here = host.oci_platform().split("/")
    mine = Descriptor(mt.OCI_MANIFEST, "sha256:" + "1" * 64, 10,
                      platform={"os": "linux", "architecture": here[1], **({"variant": here[2]} if len(here) > 2 else {})})
    other = Descriptor(mt.OCI_MANIFEST, "sha256:" + "2" * 64, 10, platform={"os": "linux", "architecture": "s390x"
                                                                              if here[1] != "s390x" else "arm64"})
    assert choose_manifest(Index((other, mine)), None, "x") == mine
