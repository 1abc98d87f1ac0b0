"""CRIU's page-server protocol, the part a lazy-pages daemon speaks (criu/page-xfer.c).

Every message is one fixed header, the C struct `page_server_iov` in the host's byte order:
u32 command (low 16 bits the command, high 16 bits flags), 4 bytes of padding, then u64
nr_pages, u64 vaddr and u64 dst_id. `criu lazy-pages --page-server` sends:

- PS_IOV_GET(nr_pages, vaddr, dst_id = the pid of pagemap-<pid>.img): the server answers with a
  header PS_IOV_ADD_F | PE_PRESENT << 16 carrying the same vaddr and dst_id and a page count that
  MAY be smaller than asked (never larger, never 0), followed by that many pages. The daemon
  matches answers to requests in order: answers must come in the order of the requests.
- PS_IOV_CLOSE, or PS_IOV_FORCE_CLOSE on an inherited socket (`--ps-socket`), once every page
  is in: answered with an int32 status (0) after which the daemon exits.

The daemon sends no open or handshake first (PS_IOV_OPEN2 and the has-parent byte belong to the
dump direction), and nothing else in this direction.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import CorruptData

PAGE_SIZE = 4096

PS_IOV_ADD = 1
PS_IOV_HOLE = 2
PS_IOV_OPEN = 3
PS_IOV_OPEN2 = 4
PS_IOV_PARENT = 5
PS_IOV_ADD_F = 6
PS_IOV_GET = 7
PS_IOV_CLOSE = 0x1023
PS_IOV_FORCE_CLOSE = 0x1024

PE_PARENT = 1 << 0  # pagemap flags (criu/include/pagemap.h)
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2

_CMD_BITS = 16
HEADER = struct.Struct("=I4xQQQ")  # the C struct's natural layout on every 64-bit host CRIU runs on
assert HEADER.size == 32

CLOSE_ACK = struct.pack("=i", 0)


@dataclass(frozen=True, slots=True)
class Message:
    command: int
    flags: int
    nr_pages: int
    vaddr: int
    dst_id: int

    @property
    def length(self) -> int:
        return self.nr_pages * PAGE_SIZE


def decode(header: bytes) -> Message:
    if len(header) != HEADER.size:
        raise CorruptData(f"page-server message of {len(header)} bytes, not {HEADER.size}")
    cmd, nr_pages, vaddr, dst_id = HEADER.unpack(header)
    return Message(cmd & ((1 << _CMD_BITS) - 1), cmd >> _CMD_BITS, nr_pages, vaddr, dst_id)


def encode(command: int, *, flags: int = 0, nr_pages: int = 0, vaddr: int = 0, dst_id: int = 0) -> bytes:
    return HEADER.pack(flags << _CMD_BITS | command, nr_pages, vaddr, dst_id)


def pages_header(request: Message, nr_pages: int) -> bytes:
    """The header that precedes `nr_pages` pages answering `request` (a PS_IOV_GET)."""
    if not 0 < nr_pages <= request.nr_pages:
        raise ValueError(f"an answer carries 1..{request.nr_pages} pages, not {nr_pages}")
    return encode(PS_IOV_ADD_F, flags=PE_PRESENT, nr_pages=nr_pages, vaddr=request.vaddr, dst_id=request.dst_id)
