#!/usr/bin/env python3
"""Throughput of the peer transport: frames/s and MB/s between two PeerTransports on loopback.

    python compat/bench_peers.py [--frames N] [--loop uvloop|asyncio] [--mode both|inproc|procs]

Theory of operation. A sender transport streams N messages of a fixed body size
(100 B and 64 KiB) to a receiver transport whose raft-family handler counts them;
the receiver answers "done" once it has all N, and the clock runs from the first
send to that answer. The sender never lets more than 4 MiB wait in its queue
(``PeerTransport.drain``), so nothing is dropped and the figure is what the
connection sustains, not how fast the queue fills. Two set-ups:

* ``inproc``: both transports in one process and one event loop (what the
  transport alone costs; sender and receiver share one core);
* ``procs``: the receiver in a child process (``--receive``), so each side has a
  core of its own, as two nodes would.

MB/s counts body bytes (payload); wire bytes add an 8-byte header and 2 to 5
bytes of msgpack per frame. CPU µs/frame is each process's own CPU time
(``time.process_time``) over the run divided by the frames: on a shared machine
it varies far less than frames/s, which depends on what else gets the cores. In
one process the figure covers both sides. Each case runs ``--repeat`` times and
the fastest run is printed (a shared machine's noise only ever makes a run
slower). This is a measurement, not a test: the exit code is 0 whatever the
figures are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vfsd.peers.frame import RAFT, WIRE  # noqa: E402
from vfsd.peers.settings import PeerSettings  # noqa: E402
from vfsd.peers.transport import PeerTransport  # noqa: E402

REGISTRY = WIRE.copy()
BENCH = REGISTRY.message(RAFT, 1, "bench")  # body: bytes (counted)
START = REGISTRY.message(RAFT, 2, "bench_start")  # body: how many bench messages follow
DONE = REGISTRY.message(RAFT, 3, "bench_done")  # body: how many were received
WINDOW_BYTES = 4 * 1024 * 1024
SETTINGS = PeerSettings(max_frame_bytes=1024 * 1024, send_queue_max_bytes=64 * 1024 * 1024,
                        send_queue_max_frames=1_000_000)
SIZES = (100, 64 * 1024)


def transport(node_id: str) -> PeerTransport:
    return PeerTransport(node_id, f"{node_id}-bench", "bench", "127.0.0.1", 0, settings=SETTINGS, registry=REGISTRY)


class Receiver:
    """Counts bench messages; answers DONE [count, CPU seconds spent] once all have arrived."""

    def __init__(self, t: PeerTransport) -> None:
        self.t = t
        self.expected = -1
        self.count = 0
        self.cpu_start = 0.0
        t.register(RAFT, self.on_message)

    def on_message(self, peer: str, mtype: int, body: Any) -> None:
        if mtype == BENCH:
            self.count += 1
            if self.count == self.expected:
                self.t.send(peer, RAFT, DONE, [self.count, time.process_time() - self.cpu_start])
        elif mtype == START:
            self.expected, self.count, self.cpu_start = body, 0, time.process_time()


Run = tuple[float, float, float]  # wall seconds, sender CPU seconds, receiver CPU seconds


async def stream(sender: PeerTransport, peer: str, frames: int, size: int, done: asyncio.Future[Any]) -> Run:
    body = os.urandom(size)
    started = time.perf_counter()
    cpu_started = time.process_time()
    sender.send(peer, RAFT, START, frames)
    send = sender.send
    for i in range(frames):
        send(peer, RAFT, BENCH, body)
        if i & 63 == 63 and sender.queued(peer)[1] > WINDOW_BYTES:
            await sender.drain(peer, WINDOW_BYTES // 2)
    received, receiver_cpu = await asyncio.wait_for(done, 300)
    elapsed = time.perf_counter() - started
    assert received == frames, (received, frames)
    return elapsed, time.process_time() - cpu_started, receiver_cpu


async def connect_sender(receiver_port: int) -> tuple[PeerTransport, list[asyncio.Future[Any]]]:
    sender = transport("sender")
    waiting: list[asyncio.Future[Any]] = []

    def on_message(peer: str, mtype: int, body: Any) -> None:
        if mtype == DONE and waiting and not waiting[0].done():
            waiting[0].set_result(body)

    sender.register(RAFT, on_message)
    await sender.start()
    sender.add_peer("receiver", "127.0.0.1", receiver_port)
    deadline = time.monotonic() + 10
    while not sender.connected("receiver"):
        if time.monotonic() > deadline:
            raise SystemExit("the receiver did not connect within 10 s")
        await asyncio.sleep(0.01)
    return sender, waiting


async def run_case(sender: PeerTransport, waiting: list[asyncio.Future[Any]], frames: int, size: int) -> Run:
    waiting.clear()
    waiting.append(asyncio.get_running_loop().create_future())
    return await stream(sender, "receiver", frames, size, waiting[0])


async def inproc(frames_for: dict[int, int], repeat: int) -> dict[int, Run]:
    receiver = transport("receiver")
    Receiver(receiver)
    await receiver.start()
    sender, waiting = await connect_sender(receiver.port)
    try:
        return {size: min([await run_case(sender, waiting, frames_for[size], size) for _ in range(repeat)])
                for size in SIZES}
    finally:
        await sender.stop()
        await receiver.stop()


async def procs(frames_for: dict[int, int], repeat: int, loop_name: str) -> dict[int, Run]:
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--receive", "--loop", loop_name],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 20)
        sender, waiting = await connect_sender(int(line))
        try:
            return {size: min([await run_case(sender, waiting, frames_for[size], size) for _ in range(repeat)])
                    for size in SIZES}
        finally:
            await sender.stop()
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
        if child.poll() is None:
            child.kill()
            child.wait()


async def receive_forever() -> None:
    t = transport("receiver")
    Receiver(t)
    await t.start()
    print(t.port, flush=True)
    await asyncio.Event().wait()  # until the parent terminates us


def run(coro: Any, loop_name: str) -> Any:
    if loop_name == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="100-byte frames per run (64 KiB: a 50th)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--mode", choices=("both", "inproc", "procs"), default="both")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        with contextlib.suppress(KeyboardInterrupt):
            run(receive_forever(), args.loop)
        return 0
    frames_for = {100: args.frames, 64 * 1024: max(100, args.frames // 50)}
    print(f"peer transport throughput, {args.loop} loop, best of {args.repeat} (MB = 10^6 body bytes)\n")
    print("| set-up | body | frames | frames/s | MB/s | sender CPU µs/frame | receiver CPU µs/frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    modes = ("inproc", "procs") if args.mode == "both" else (args.mode,)
    for mode in modes:
        if mode == "inproc":
            best = run(inproc(frames_for, args.repeat), args.loop)
            label = "one process"
        else:
            best = run(procs(frames_for, args.repeat, args.loop), args.loop)
            label = "two processes"
        for size in SIZES:
            n, (seconds, sender_cpu, receiver_cpu) = frames_for[size], best[size]
            body = "100 B" if size == 100 else "64 KiB"
            cpu = (f"{sender_cpu / n * 1e6:.1f} (both sides) | in the same process" if mode == "inproc"
                   else f"{sender_cpu / n * 1e6:.1f} | {receiver_cpu / n * 1e6:.1f}")
            print(f"| {label} | {body} | {n} | {n / seconds:,.0f} | {n * size / seconds / 1e6:,.1f} | {cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
