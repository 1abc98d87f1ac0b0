"""CRIU's refusals explained: excerpts of real logs of failed dumps and restores (CRIU 4.2.1 and
4.1.1 on kernel 6.18, runc 1.1.5), each with the harmless RLIMIT line every log here starts with."""
from __future__ import annotations

from pathlib import Path

import pytest

from checkpointer.criu.diagnose import RULES, criu_failed, diagnose
from checkpointer.errors import CriuFailed

RLIMIT = "(00.066686) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted"

LOGS = {
    # CRIU 4.1.1 dumping a container with a listening socket on kernel 6.18
    "sockets-kernel": """\
(00.189022) sockets: Searching for socket 0x19b20 family 2
(00.189036) Error (criu/sockets.c:628): sockets: Can't get 1:16 opt: Operation not supported
(00.189039) Error (criu/sockets.c:628): sockets: Can't get 1:34 opt: Operation not supported
(00.189043) sockets: No filter for socket
(00.189056) Error (criu/cr-dump.c:1681): Dump files (pid: 12464) failed with -1""",
    # a runc container with its own network namespace, iptables not on PATH, no nftables config
    "iptables-missing": """\
(00.077965) net: Lock network
(00.077975) Running network-lock scripts
(00.077977) \tRPC
Error (criu/util.c:642): execvp("iptables-restore", ...) failed: No such file or directory
(00.082537) Error (criu/util.c:657): exited, status=1
Error (criu/util.c:642): execvp("ip6tables-restore", ...) failed: No such file or directory
(00.087546) Error (criu/net.c:3436): net: Locking network failed: iptables-restore returned -1. This may be \
connected to disabled CONFIG_NETFILTER_XT_MARK kernel build config option.""",
    # a process in the host's namespace with --tcp-established, iptables not on PATH
    "iptables-missing-host": """\
(00.050820) \tRunning iptables [iptables  -t filter -I INPUT --protocol tcp -m mark ! --mark 0xC114 --source \
127.0.0.1 --sport 57115 --destination 127.0.0.1 --dport 55708 -j DROP]
sh: 1: iptables: not found
(00.052386) Error (criu/util.c:657): exited, status=127
(00.052400) Error (criu/netfilter.c:105): Iptables configuration failed
(00.052403) Error (criu/sk-tcp.c:81): tcp: Failed to lock TCP connection 314a7""",
    "tcp-established": """\
(00.199072) sockets: Searching for socket 0x19b22 family 2
(00.199073) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.
(00.199077) ----------------------------------------
(00.199173) Error (criu/cr-dump.c:1545): Dump files (pid: 12464) failed with -1""",
    # a restore without --tcp-established of a checkpoint taken with it
    "tcp-in-image": """\
(00.078137)      6: inet: \tRestore: family AF_INET    type SOCK_STREAM    proto IPPROTO_TCP      port 44764 \
state TCP_ESTABLISHED  src_addr 127.0.0.1
(00.078169)      6: Error (criu/sk-inet.c:912): inet: Connected TCP socket in image
(00.078184)      6: Error (criu/files.c:1221): Unable to open fd=3 id=0xa
(00.078919)      1: Error (criu/cr-restore.c:1265): 6 exited, status=1""",
    # runc restore of an established loopback connection into a namespace whose lo is down
    "loopback-down": """\
(00.097728)      6: Debug: \tSetting 2 queue seq to 4072113689
(00.097742)      6: Error (soccr/soccr.c:529): Can't connect inet socket back: Network is unreachable
(00.097758)      6: Error (criu/files.c:1221): Unable to open fd=3 id=0xa""",
    "address-in-use": """\
(00.071513)   6272: inet: \tRestore: family AF_INET    type SOCK_STREAM    proto IPPROTO_TCP      port 47124 state \
TCP_LISTEN       src_addr 127.0.0.1
(00.071561)   6272: Error (criu/sk-inet.c:1059): inet: Can't bind inet socket (id 25): Address already in use
(00.071572)   6272: Error (criu/files.c:1221): Unable to open fd=3 id=0x19
(00.071615) Error (criu/cr-restore.c:2331): Restoring FAILED.""",
    "external-unix-socket": """\
(00.092875) unix: \tRunaway socket: ino 198266 peer_ino 0 family    1 type    2 state  1 name /tmp/netx/prov/ext.dgram
(00.092878) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using --ext-unix-sk option.
(00.092924) net: Unlock network""",
    # runc 1.1.5 with CRIU 4.2.1, a host process connected to the container's unix listener (also
    # with --ext-unix-sk)
    "unix-client-outside": """\
(00.043951) unix: \tDumping: ino 1453310 peer_ino 1453309 family    1 type    1 state  1 name /tmp/zoo.sock
(00.043958) 1565 fdinfo 6: pos:                0 flags:                2/0x1
(00.043959) sockets: Searching for socket 0x162d3f family 1
(00.043960) Error (criu/sk-unix.c:351): unix: Unix socket 1453375 not found
(00.043962) ----------------------------------------
(00.043971) Error (criu/cr-dump.c:1545): Dump files (pid: 1565) failed with -1""",
    # runc 1.1.5 with CRIU 4.2.1, samples/workloads/iouring
    "io-uring": """\
(00.076801) Handling VMA with the following smaps entry: 7fafd43b8000-7fafd43b9000 rw-s 10000000 00:10 1450705 \
                   anon_inode:[io_uring]
(00.076809) Error (criu/proc_parse.c:502): Unknown shit 600 (anon_inode:[io_uring])
(00.076815) Error (criu/proc_parse.c:738): Can't open 1070's mapfile link 7fafd43b8000: No such device or address
(00.076820) Error (criu/cr-dump.c:1440): Collect mappings (pid: 1070) failed with -1""",
    "file-locks": """\
(00.052159) Dumping file-locks
(00.052161) Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! You can try --file-locks to \
dump them.
(00.052200) net: Unlock network""",
    "ghost-file": """\
(00.070964) Dumping ghost file for fd 17 id 0x3
(00.070965) Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/netx/prov/big of 3145728 size, increase limit
(00.070985) Error (criu/cr-dump.c:1545): Dump files (pid: 398) failed with -1""",
    # a container whose stdout is a host file
    "external-file": """\
(00.099501) 1387 fdinfo 1: pos:                0 flags:           100001/0
(00.099509) Error (criu/files-reg.c:1790): Can't lookup mount=27 for fd=1 path=/tmp/netx/hostout.txt
(00.099529) Error (criu/cr-dump.c:1545): Dump files (pid: 1387) failed with -1""",
    "pid-in-use": """\
(00.053313) Forking task with 2404 pid (flags 0x0)
(00.053511) Error (criu/cr-restore.c:1237): Can't fork for 2404: File exists
(00.053530) Error (criu/cr-restore.c:2331): Restoring FAILED.""",
    # CRIU 4.1.1 restoring a checkpoint CRIU 4.2.1 took (it reads the memory as empty)
    "older-criu": """\
(00.245491) pie: 6: vdso: Parsing at 0x7f6c031c0000 0x7f6c031c2000
(00.245494) pie: 6: Error (criu/pie/util-vdso.c:117): vdso: ELF header magic mismatch
(00.248467) Error (criu/cr-restore.c:2320): Restoring FAILED.""",
    # runc's own output, restoring a spec that bind-mounts a file this host lacks
    "bind-source-missing": 'time="2026-12-01T22:07:52Z" level=error msg="stat /tmp/netx/hostfile: no such file or '
                           'directory"',
}

# What each must say: words of the meaning, and of the hint (the option or version that helps).
EXPECTED = {
    "sockets-kernel": (["network sockets", "CRIU < 4.2", "kernel >= 6.16"], ["CRIU >= 4.2", "scripts/setup.sh"]),
    "iptables-missing": (["iptables-restore", "not installed"], ["iptables", "nftables"]),
    "iptables-missing-host": (["runs iptables,", "not installed"], ["iptables", "nftables"]),
    "tcp-established": (["established TCP connections"], ["--tcp-established"]),
    "tcp-in-image": (["holds established TCP connections"], ["--tcp-established", "own name"]),
    "loopback-down": (["no route", "loopback down"], ["setup-namespaces", "docs/network.md"]),
    "address-in-use": (["holds the port"], ["network namespace of its own"]),
    "external-unix-socket": (["unix socket", "outside"], ["--ext-unix-sk"]),
    "unix-client-outside": (["outside the container is connected", "unix sockets"],
                            ["disconnect it first", "--ext-unix-sk does not help"]),
    "io-uring": (["cannot checkpoint io_uring", "uses io_uring"], ["no CRIU release supports io_uring"]),
    "file-locks": (["file locks"], ["--file-locks"]),
    "ghost-file": (["/tmp/netx/prov/big", "3145728 bytes", "deleted"], ["ghost-limit"]),
    "external-file": (["descriptor 1", "/tmp/netx/hostout.txt", "mount the container does not have"], ["stdio"]),
    "pid-in-use": (["pid 2404", "taken"], ["pid namespace"]),
    "older-criu": (["memory", "older than 4.2"], ["at least as new"]),
    "bind-source-missing": (["bind-mounts /tmp/netx/hostfile"], ["create it"]),
}


@pytest.mark.parametrize("name", sorted(LOGS))
def test_each_refusal_is_named_with_what_helps(name):
    found = diagnose(f"{RLIMIT}\n{LOGS[name]}\n")
    assert found is not None, f"{name}: nothing recognised"
    meaning_words, hint_words = EXPECTED[name]
    for word in meaning_words:
        assert word in found.meaning, f"{name}: {word!r} not in {found.meaning!r}"
    for word in hint_words:
        assert word in found.hint, f"{name}: {word!r} not in {found.hint!r}"
    assert found.line in LOGS[name]


def test_every_rule_is_exercised_by_a_real_log():
    used = {rule for text in LOGS.values() for rule in RULES if any(rule.pattern.search(ln) for ln in text.splitlines())}
    assert used == set(RULES), [r.pattern.pattern for r in set(RULES) - used]


def test_the_harmless_line_and_unknown_failures_are_not_explained():
    assert diagnose(RLIMIT) is None
    assert diagnose("(00.1) Error (criu/mem.c:1): something new went wrong\n(00.2) Dumping FAILED.") is None


def test_criu_failed_names_the_refusal_keeps_the_log_lines_and_both_hints(tmp_path: Path):
    log = tmp_path / "dump.log"
    log.write_text(f"{RLIMIT}\n{LOGS['file-locks']}\n(00.052229) Error (criu/cr-dump.c:1975): Dumping FAILED.\n")
    exc = criu_failed("runc could not checkpoint 'web'", log=log, output="criu failed: type NOTIFY errno 0",
                      hint="the container was left running")
    assert isinstance(exc, CriuFailed) and exc.exit_code == 6
    assert str(exc) == "runc could not checkpoint 'web': processes in the container hold file locks"
    assert exc.hint == "--file-locks checkpoints them; the container was left running"
    assert "Some file locks are hold" in exc.log_tail.splitlines()[0]  # the errors first, the harmless one not
    assert exc.output == "criu failed: type NOTIFY errno 0"


def test_criu_failed_reads_the_runtime_output_when_the_log_says_nothing(tmp_path: Path):
    exc = criu_failed("runc could not restore 'web'", log=tmp_path / "missing.log", output=LOGS["bind-source-missing"])
    assert "bind-mounts /tmp/netx/hostfile" in str(exc) and exc.log_tail == ""
    plain = criu_failed("runc could not restore 'web'", log=None, output="something else")
    assert str(plain) == "runc could not restore 'web'" and plain.hint is None
