"""CRIU options as runtime flags and back: one table serves runc's and podman's command lines."""
from __future__ import annotations

from checkpointer.criu.options import CriuOptions


def test_flags_follow_the_options_and_leave_out_what_a_runtime_lacks():
    every = CriuOptions(leave_running=True, tcp_established=True, file_locks=True, ext_unix_sk=True, shell_job=True)
    assert every.flags() == ["--leave-running", "--tcp-established", "--file-locks", "--ext-unix-sk", "--shell-job"]
    assert every.flags(without=("ext_unix_sk", "shell_job")) == ["--leave-running", "--tcp-established",
                                                                 "--file-locks"]
    assert every.for_restore().flags() == ["--tcp-established", "--file-locks", "--ext-unix-sk", "--shell-job"]
    assert CriuOptions().flags() == []


def test_from_flags_reads_back_what_flags_writes():
    some = CriuOptions(tcp_established=True, shell_job=True)
    given = {flag.lstrip("-") for flag in some.flags()}
    assert CriuOptions.from_flags(given.__contains__) == some
