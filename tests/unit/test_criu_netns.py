"""The network state a save records and a restore replays (checkpointer/criu/netns.py): parsed
from real `ip -j` output, carried as JSON, checked when read back, replayed by a script."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from checkpointer.criu import netns
from checkpointer.errors import CorruptData

# `ip -j address show`, `ip -j -4 route show table all`, `ip -j -6 route show table all` in a network
# namespace where lo is up with 10.9.9.9/32 and fd00::9/128 added, routes through lo (main, table 100,
# a local one, IPv6 default), a blackhole, and a veth pair mn0/mn1 with an address and a route on mn0.
ADDRESSES = json.loads(
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UN'
    'KNOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00'
    ':00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","val'
    'id_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet","local":"10.9.9.9","prefixlen":32,'
    '"scope":"global","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6"'
    ',"local":"fd00::9","prefixlen":128,"scope":"global","valid_life_time":4294967295,"preferred_life_time":4294967'
    '295},{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295,"preferred_li'
    'fe_time":4294967295}]},{"ifindex":2,"link":"mn0","ifname":"mn1","flags":["BROADCAST","MULTICAST"],"mtu":1500,"'
    'qdisc":"noop","operstate":"DOWN","group":"default","txqlen":1000,"link_type":"ether","address":"4a:73:8a:35:65'
    ':b1","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[]},{"ifindex":3,"link":"mn1","ifname":"mn0","flags":["NO-CAR'
    'RIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","operstate":"LOWERLAYERDOWN","group"'
    ':"default","txqlen":1000,"link_type":"ether","address":"6a:56:aa:cb:6f:b8","broadcast":"ff:ff:ff:ff:ff:ff","ad'
    'dr_info":[{"family":"inet","local":"10.1.0.2","prefixlen":24,"scope":"global","label":"mn0","valid_life_time":'
    '4294967295,"preferred_life_time":4294967295}]}]')
ROUTES4 = json.loads(
    '[{"dst":"192.0.2.0/24","dev":"lo","table":"100","scope":"link","flags":[]},{"dst":"10.1.0.0/24","dev":"mn0","p'
    'rotocol":"kernel","scope":"link","prefsrc":"10.1.0.2","flags":["linkdown"]},{"dst":"10.50.0.0/16","dev":"lo","'
    'scope":"link","flags":[]},{"dst":"10.60.0.0/16","gateway":"10.1.0.1","dev":"mn0","flags":["linkdown"]},{"type"'
    ':"blackhole","dst":"203.0.113.0/24","flags":[]},{"type":"local","dst":"10.1.0.2","dev":"mn0","table":"local","'
    'protocol":"kernel","scope":"host","prefsrc":"10.1.0.2","flags":[]},{"type":"broadcast","dst":"10.1.0.255","dev'
    '":"mn0","table":"local","protocol":"kernel","scope":"link","prefsrc":"10.1.0.2","flags":["linkdown"]},{"type":'
    '"local","dst":"10.9.9.9","dev":"lo","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.9.9.9","f'
    'lags":[]},{"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","p'
    'refsrc":"127.0.0.1","flags":[]},{"type":"local","dst":"127.0.0.1","dev":"lo","table":"local","protocol":"kerne'
    'l","scope":"host","prefsrc":"127.0.0.1","flags":[]},{"type":"broadcast","dst":"127.255.255.255","dev":"lo","ta'
    'ble":"local","protocol":"kernel","scope":"link","prefsrc":"127.0.0.1","flags":[]},{"type":"local","dst":"198.5'
    '1.100.0/24","dev":"lo","table":"local","scope":"host","flags":[]}]')
ROUTES6 = json.loads(
    '[{"dst":"fd00::9","dev":"lo","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"default","de'
    'v":"lo","metric":1024,"flags":[],"pref":"medium"},{"type":"local","dst":"::1","dev":"lo","table":"local","prot'
    'ocol":"kernel","metric":0,"flags":[],"pref":"medium"},{"type":"local","dst":"fd00::9","dev":"lo","table":"loca'
    'l","protocol":"kernel","metric":0,"flags":[],"pref":"medium"}]')


def test_parse_keeps_what_the_container_added_to_loopback_and_nothing_the_kernel_made():
    state = netns.parse(netns.PRIVATE, ADDRESSES, ROUTES4, ROUTES6)
    assert state.interfaces == ("lo", "mn1", "mn0")
    lo = state.loopback
    assert lo is not None and lo.up
    assert lo.addresses == (netns.Address("10.9.9.9/32"), netns.Address("fd00::9/128"))
    assert set(lo.routes) == {
        netns.Route("192.0.2.0/24", table="100", scope="link"),
        netns.Route("10.50.0.0/16", scope="link"),
        netns.Route("203.0.113.0/24", type="blackhole"),
        netns.Route("198.51.100.0/24", type="local", table="local", scope="host"),
        netns.Route("::/0", metric=1024),
    }  # not mn0's routes (its own hooks' business), nor any the kernel made for an address


def test_commands_and_script_bring_it_back_in_order():
    lo = netns.parse(netns.PRIVATE, ADDRESSES, ROUTES4, ROUTES6).loopback
    commands = lo.commands()
    assert commands[0] == "link set lo up"
    assert "address replace 10.9.9.9/32 dev lo scope global" in commands
    assert "route replace blackhole 203.0.113.0/24 table main" in commands
    assert "route replace local 198.51.100.0/24 dev lo table local scope host" in commands
    assert "route replace ::/0 dev lo table main metric 1024" in commands
    assert commands.index("address replace fd00::9/128 dev lo scope global") < commands.index(
        "route replace 10.50.0.0/16 dev lo table main scope link")
    script = netns.restore_script(lo, "/usr/bin/nsenter", "/usr/sbin/ip")
    assert script.startswith("#!/bin/sh\n")
    assert '[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] || exit 0' in script
    assert "exec /usr/bin/nsenter -t \"$CRTOOLS_INIT_PID\" -n -- /usr/sbin/ip -batch - <<'CKPT_END'" in script
    odd = netns.restore_script(lo, "/opt/it's/nsenter", "/usr/sbin/ip")
    assert "exec '/opt/it'\"'\"'s/nsenter' -t" in odd
    assert script.endswith("\n".join(commands) + "\nCKPT_END\n")
    assert netns.restore_script(netns.Loopback(up=False), "/n", "/i") is None  # down, nothing added: no script


def test_json_round_trip_and_old_checkpoints():
    state = netns.parse(netns.PRIVATE, ADDRESSES, ROUTES4, ROUTES6)
    assert netns.NetworkState.from_json(json.loads(json.dumps(state.to_json()))) == state
    joined = netns.parse(netns.JOINED, ADDRESSES, ROUTES4, ROUTES6)
    assert joined.loopback is None and "loopback" not in joined.to_json()
    spec = {"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}}
    assert netns.NetworkState.assumed(spec) == netns.NetworkState(netns.PRIVATE, netns.Loopback())
    spec["linux"]["namespaces"][1]["path"] = "/run/netns/x"
    assert netns.NetworkState.assumed(spec) == netns.NetworkState(netns.JOINED)
    assert netns.NetworkState.assumed({"linux": {"namespaces": [{"type": "pid"}]}}) == netns.NetworkState(netns.HOST)
    assert netns.NetworkState.assumed({}).namespace == netns.HOST


@pytest.mark.parametrize("loopback", [
    {"addresses": [{"address": "10.0.0.1/32\nlink set lo down"}]},
    {"addresses": [{"address": "10.0.0.1/32", "scope": "global dev eth0"}]},
    {"routes": [{"dst": "CKPT_END"}]},
    {"routes": [{"dst": "10.0.0.0/8", "table": "main\nCKPT_END"}]},
    {"routes": [{"dst": "10.0.0.0/8", "metric": "5; reboot"}]},
    {"routes": [{"dst": "10.0.0.0/8", "src": "$(reboot)"}]},
    {"addresses": "10.0.0.1"},
])
def test_a_hostile_record_is_corrupt_data_not_a_script_line(loopback):
    with pytest.raises(CorruptData):
        netns.NetworkState.from_json({"namespace": "private", "interfaces": ["lo"], "loopback": loopback})


def test_a_hostile_namespace_or_interface_is_refused():
    with pytest.raises(CorruptData):
        netns.NetworkState.from_json({"namespace": "mine"})
    with pytest.raises(CorruptData):
        netns.NetworkState.from_json({"namespace": "host", "interfaces": ["eth0 && reboot"]})


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and ip")
def test_read_then_replay_in_a_blank_namespace_gives_the_same_state():
    setup = ("ip link set lo up; ip address add 10.9.9.9/32 dev lo; ip address add fd00::9/128 dev lo; "
             "ip route add 10.50.0.0/16 dev lo; ip -6 route add default dev lo; "
             "ip route add 192.0.2.0/24 dev lo table 100; ip route add local 198.51.100.0/24 dev lo; "
             "ip route add blackhole 203.0.113.0/24; exec sleep 60")
    source = subprocess.Popen(["unshare", "--net", "sh", "-c", setup])
    blank = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        for _ in range(100):  # until the set-up is done
            state = netns.read(source.pid, netns.PRIVATE)
            if len(state.loopback.routes) == 5:
                break
            time.sleep(0.02)
        script = netns.restore_script(state.loopback, *netns.tools())
        env = {**os.environ, "CRTOOLS_SCRIPT_ACTION": "setup-namespaces", "CRTOOLS_INIT_PID": str(blank.pid)}
        subprocess.run(["sh", "-c", script], env=env, check=True)
        assert netns.read(blank.pid, netns.PRIVATE) == state
        env["CRTOOLS_SCRIPT_ACTION"] = "post-restore"  # any other step: nothing happens
        subprocess.run(["sh", "-c", script], env=env, check=True)
    finally:
        for proc in (source, blank):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_interfaces_now_and_what_is_missing_after_restore():
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        for _ in range(100):
            if netns.interfaces_now(proc.pid) == ("lo",):
                break
            time.sleep(0.02)
        assert netns.interfaces_now(proc.pid) == ("lo",)
        state = netns.NetworkState(netns.PRIVATE, netns.Loopback(), ("lo", "eth0"))
        assert netns.missing_after_restore(state, proc.pid) == ("eth0",)
        warning, = netns.warnings_after_restore(state, proc.pid)
        assert warning.startswith("interface eth0 ") and "docs/network.md" in warning
        assert netns.missing_after_restore(netns.NetworkState(netns.HOST, None, ("eth9",)), proc.pid) == ()
    finally:
        proc.kill()
        proc.wait()
