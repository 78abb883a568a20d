#!/usr/bin/env python3
"""What client-side caching costs a write, measured in process.

    python compat/bench_tracking.py [--commands N] [--rounds R] [--variants a,b,...]

Theory of operation. One node is built in this process (its data dir in a
temporary directory; it never listens) and one client connection is made on a
fake transport that swallows what it is sent, so what is timed is the client
shell's batch loop, dispatch and the handler: the whole path of a command
after the socket read. Each round runs ``N`` ``SET key:i v`` commands in
pipelined batches of 16 (``Client.run``) and reports nanoseconds per SET: the
fastest round (the least disturbed by other work on the machine), the median and
the slowest.

Variants (``--variants``):

- ``off``: no client tracks (the cost every node pays: it must stay the cost
  before tracking existed; run this script on the older tree with
  ``PYTHONPATH=<tree>`` to compare).
- ``untimed``: the same with SLOWLOG off, so that no command is timed (the
  shell reads a clock once per command while SLOWLOG or LATENCY is on).
- ``other``: another connection tracks (default mode) keys the writer never
  touches: every change is looked up in the tracking table and misses.
- ``bcast``: another connection tracks in BCAST mode with a prefix the keys do
  not have.
- ``hit``: another connection has read every key the writer then sets: each SET
  sends one invalidation push (and re-reading puts it back, so every round hits).

The numbers are a measurement, not a test: the exit code is 0 whatever they are.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from typing import Any

BATCH = 16


class SinkTransport:
    """Enough of an asyncio transport for ``Client``: accepts writes and forgets them."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, pieces: Any) -> None:
        for piece in pieces:
            self.written += len(piece)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 6379)}.get(name, default)


def connect(node: Any) -> Any:
    from vfsd.server import Client

    client = Client(node)
    client.connection_made(SinkTransport())
    return client


def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


async def measure(variant: str, commands: int, rounds: int) -> list[float]:
    from vfsd.config import Config
    from vfsd.node import Node

    with tempfile.TemporaryDirectory() as tmp:
        config = Config(node_id="bench", data_dir=tmp, port=0)
        if variant == "untimed":  # SLOWLOG (and LATENCY) off: no command is timed
            config = dataclasses.replace(config, slowlog_log_slower_than_us=-1)
        node = Node(config)
        writer = connect(node)
        keys = [b"key:%d" % i for i in range(commands)]
        sets = [[b"SET", k, b"xxx"] for k in keys]
        batches = [sets[i : i + BATCH] for i in range(0, len(sets), BATCH)]
        reader = None
        if variant not in ("off", "untimed"):
            reader = connect(node)
            reader.data_received(resp(b"HELLO", b"3"))
            if variant == "bcast":
                reader.data_received(resp(b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"other:"))
            else:
                reader.data_received(resp(b"CLIENT", b"TRACKING", b"on"))
            if variant == "other":
                for i in range(1000):
                    reader.data_received(resp(b"GET", b"other:%d" % i))
            await asyncio.sleep(0)
        gets = [resp(b"GET", k) for k in keys]
        results = []
        for _ in range(rounds):
            if variant == "hit":
                for g in gets:
                    reader.data_received(g)  # type: ignore[union-attr]
            start = time.perf_counter_ns()
            for batch in batches:
                writer.run(batch)
            elapsed = time.perf_counter_ns() - start
            results.append(elapsed / commands)
            await asyncio.sleep(0)  # let pushes flush, as the event loop would between reads
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--variants", default="off,untimed,other,bcast,hit")
    args = parser.parse_args(argv)
    for variant in args.variants.split(","):
        try:
            results = asyncio.run(measure(variant, args.commands, args.rounds))
        except Exception as exc:  # an older tree without tracking: only "off" applies there
            print(f"{variant:6s} not measured: {exc!r}")
            continue
        results.sort()
        median = statistics.median(results)
        print(f"{variant:8s} min {results[0]:6.0f} ns/SET, median {median:6.0f}, max {results[-1]:6.0f}  "
              f"({args.rounds} rounds of {args.commands})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
