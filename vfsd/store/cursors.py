"""SCAN cursors that fit in an unsigned 64-bit integer.

The keyspace is ordered, so the exact way to resume a scan is "the first key
after the last one returned". Keys can be up to 1 KiB, but clients parse
cursors as u64 (redis-cli uses strtoull), so a cursor cannot carry the key.
Instead it carries a ticket into a bounded table of resume keys plus the
resume key's rank at the time:

    cursor = rank << 20 | ticket        (ticket in 1 .. 2**20 - 1, never 0)

A cursor whose ticket is still in the table resumes exactly after its key,
however the keyspace changed meanwhile, giving SCAN's guarantee (every key
present for the whole scan is returned). A cursor whose ticket was evicted (more
than ``capacity`` scans in flight, a restart, another node) resumes at its rank:
still a valid cursor, though keys deleted before that rank meanwhile may shift
a few keys past it.
"""

from __future__ import annotations

from collections import OrderedDict

TICKET_BITS = 20
TICKET_MASK = (1 << TICKET_BITS) - 1


class ScanCursors:
    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._resume: OrderedDict[int, bytes] = OrderedDict()
        self._next = 1

    def issue(self, last_key: bytes, rank: int) -> int:
        ticket = self._next
        self._next = ticket % TICKET_MASK + 1
        resume = self._resume
        resume.pop(ticket, None)
        resume[ticket] = last_key
        if len(resume) > self.capacity:
            resume.popitem(last=False)
        return (rank << TICKET_BITS) | ticket

    def resume(self, cursor: int) -> tuple[bytes | None, int]:
        """(key to resume after, or None) and the rank to fall back on."""
        return self._resume.get(cursor & TICKET_MASK), cursor >> TICKET_BITS
