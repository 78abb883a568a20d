"""Linearizability checking of register histories (get / set / cas on keys).

Theory of operation
-------------------
A history is a set of operations, each with the time it was invoked (``call``) and
the time its result came back (``ret``). It is linearizable (Herlihy & Wing 1990)
if every operation can be given a single instant between its call and its return
such that, taken in the order of those instants, the results are those of a plain
sequential register.

*P-compositionality* (Herlihy & Wing): a history is linearizable iff its restriction
to every key is, so each key is checked on its own, which keeps the search small.

Per key, the search is Wing & Gong's, with Lowe's refinements (as in Porcupine):
calls and returns sit in one list ordered by time. Walking it, at a *call* the
operation is tried as the next to take effect: if the register allows its result,
it is linearized (taken out of the list, pushed on a stack) and the walk restarts
from the head; if the walk meets a *return* of an operation not yet linearized, that
operation can no longer be placed, so the search backtracks (pops the last choice,
puts it back and tries the next call instead). Lowe's memoisation makes it fast in
practice: a (set of linearized operations, register value) pair reached once is
never explored again, because what can follow depends only on that pair.

Operations whose outcome is unknown (a client timed out, or its node crashed) get
``ret = inf``: such an operation may take effect at any point after its call,
including never observably (after everything else), which is exactly what an unknown
outcome allows. A read with an unknown outcome says nothing and may be left out.

Time values are whatever the recorder uses (monotonic ns, simulated ms); at equal
times a call is ordered before a return, so touching intervals count as concurrent.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "UNKNOWN",
    "History",
    "KeyResult",
    "LinearizabilityResult",
    "Operation",
    "check_history",
    "check_key",
]


class _Unknown:
    """The result of an operation whose outcome nobody observed."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True, slots=True)
class Operation:
    """One register operation. ``op`` is ``get`` (result: the value, None if the key
    was missing), ``set`` (args ``(value,)``, result ignored) or ``cas`` (args
    ``(expected, new)``, result True if it swapped). ``ret`` is ``inf`` and
    ``result`` UNKNOWN when the outcome is unknown."""

    client: Hashable
    key: Hashable
    op: str
    args: tuple[Any, ...]
    result: Any
    call: float
    ret: float

    def __post_init__(self) -> None:
        if self.op not in ("get", "set", "cas"):
            raise ValueError(f"unknown register operation {self.op!r}")
        if self.ret < self.call:
            raise ValueError(f"operation returns ({self.ret}) before it is called ({self.call})")

    def describe(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        end = "?" if self.ret == math.inf else f"{self.ret:g}"
        return f"{self.client}: {self.op}({self.key!r}{', ' if args else ''}{args}) -> {self.result!r} [{self.call:g}, {end}]"


def _step(state: Any, op: Operation) -> tuple[bool, Any]:
    """The sequential register: is ``op``'s result possible from ``state``, and what
    state follows."""
    kind = op.op
    if kind == "get":
        return (op.result is UNKNOWN or op.result == state), state
    if kind == "set":
        return True, op.args[0]
    expected, new = op.args
    if state == expected:
        return (op.result is UNKNOWN or op.result is True), new
    return (op.result is UNKNOWN or op.result is False), state


class _Node:
    __slots__ = ("op", "index", "is_call", "match", "prev", "next")

    def __init__(self, op: Operation | None, index: int, is_call: bool) -> None:
        self.op = op
        self.index = index
        self.is_call = is_call
        self.match: _Node | None = None  # a call's return
        self.prev: _Node | None = None
        self.next: _Node | None = None


@dataclass(slots=True)
class KeyResult:
    key: Hashable
    ok: bool | None  # None: the step budget ran out before an answer
    operations: int
    #: When not linearizable: the longest order found that explains a prefix, and the
    #: operations that could not be placed after it (those whose return was reached).
    longest_prefix: list[Operation] = field(default_factory=list)
    stuck: list[Operation] = field(default_factory=list)
    steps: int = 0

    def explain(self) -> str:
        if self.ok:
            return f"key {self.key!r}: linearizable ({self.operations} operations)"
        if self.ok is None:
            return f"key {self.key!r}: undecided after {self.steps} steps"
        lines = [f"key {self.key!r}: not linearizable; the longest linearizable prefix is:"]
        lines += [f"  {op.describe()}" for op in self.longest_prefix] or ["  (empty)"]
        lines.append("after which none of these can take effect:")
        lines += [f"  {op.describe()}" for op in self.stuck]
        return "\n".join(lines)


@dataclass(slots=True)
class LinearizabilityResult:
    ok: bool | None
    keys: list[KeyResult]

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is not True]

    def explain(self) -> str:
        bad = self.failures
        if not bad:
            return f"linearizable ({sum(k.operations for k in self.keys)} operations on {len(self.keys)} keys)"
        return "\n".join(k.explain() for k in bad)


def check_key(ops: Sequence[Operation], initial: Any = None, max_steps: int | None = None) -> KeyResult:
    """Whether the operations on one key are linearizable, starting from ``initial``."""
    key = ops[0].key if ops else None
    # Index operations in call order, so the set of linearized ones is nearly always a
    # prefix plus a few: the memo keys below stay small (see ``memo``).
    ops = sorted((op for op in ops if not (op.op == "get" and op.result is UNKNOWN)), key=lambda op: op.call)
    result = KeyResult(key, True, len(ops))
    if not ops:
        return result
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort()
    head = _Node(None, -1, False)
    calls: dict[int, _Node] = {}
    prev = head
    for _, is_return, i in events:
        node = _Node(ops[i], i, not is_return)
        if is_return:
            calls[i].match = node
        else:
            calls[i] = node
        prev.next = node
        node.prev = prev
        prev = node

    def lift(call: _Node) -> None:
        call.prev.next = call.next  # type: ignore[union-attr]
        if call.next is not None:
            call.next.prev = call.prev
        ret = call.match
        assert ret is not None
        ret.prev.next = ret.next  # type: ignore[union-attr]
        if ret.next is not None:
            ret.next.prev = ret.prev

    def unlift(call: _Node) -> None:
        ret = call.match
        assert ret is not None
        ret.prev.next = ret  # type: ignore[union-attr]
        if ret.next is not None:
            ret.next.prev = ret
        call.prev.next = call  # type: ignore[union-attr]
        if call.next is not None:
            call.next.prev = call

    seen: set[tuple[int, int, Any]] = set()
    stack: list[tuple[_Node, Any]] = []
    state, linearized = initial, 0
    best_depth = -1
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if max_steps is not None and steps > max_steps:
            result.ok, result.steps = None, steps
            return result
        assert entry is not None
        if entry.is_call:
            ok, new_state = _step(state, entry.op)  # type: ignore[arg-type]
            if ok:
                new_linearized = linearized | (1 << entry.index)
                # The set as (length of its all-linearized prefix, the bits above it):
                # equal sets give equal keys, and the keys stay a few words long.
                prefix = (~new_linearized & (new_linearized + 1)).bit_length() - 1
                memo = (prefix, new_linearized >> prefix, new_state)
                if memo not in seen:
                    seen.add(memo)
                    stack.append((entry, state))
                    state, linearized = new_state, new_linearized
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if len(stack) > best_depth:
                best_depth = len(stack)
                result.longest_prefix = [call.op for call, _ in stack]  # type: ignore[misc]
                result.stuck = _concurrent_calls(head, entry)
            if not stack:
                result.ok, result.steps = False, steps
                return result
            call, state = stack.pop()
            linearized &= ~(1 << call.index)
            unlift(call)
            entry = call.next
    result.steps = steps
    return result


def _concurrent_calls(head: _Node, stop: _Node) -> list[Operation]:
    """Operations still to place whose calls precede ``stop`` (a blocking return)."""
    out = []
    node = head.next
    while node is not None and node is not stop:
        if node.is_call:
            out.append(node.op)
        node = node.next
    out.append(stop.op)  # type: ignore[arg-type]
    return [op for op in dict.fromkeys(out) if op is not None]


def check_history(ops: Iterable[Operation], initial: Any = None, max_steps_per_key: int | None = None
                  ) -> LinearizabilityResult:
    """Check a whole history, key by key (P-compositionality). ``initial`` is every
    key's value before the history (None: missing)."""
    by_key: dict[Hashable, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    results = [check_key(key_ops, initial, max_steps_per_key) for key_ops in by_key.values()]
    ok: bool | None = True
    for r in results:
        if r.ok is False:
            ok = False
            break
        if r.ok is None:
            ok = None
    return LinearizabilityResult(ok, results)


class History:
    """Records operations as they happen; the caller supplies the times.

    ``h = invoke(client, key, "set", value, time=t0)`` then ``ok(h, result, time=t1)``
    when the result arrives, ``fail(h)`` when the operation certainly did not take
    effect (it is dropped from the history), or ``unknown(h)`` when nobody knows
    (also what every operation still open at ``operations()`` becomes).
    """

    def __init__(self) -> None:
        self._open: dict[int, tuple[Hashable, Hashable, str, tuple[Any, ...], float]] = {}
        self._done: list[Operation] = []
        self._next = 0

    def invoke(self, client: Hashable, key: Hashable, op: str, *args: Any, time: float) -> int:
        handle = self._next
        self._next += 1
        self._open[handle] = (client, key, op, tuple(args), time)
        return handle

    def ok(self, handle: int, result: Any = None, *, time: float) -> None:
        client, key, op, args, call = self._open.pop(handle)
        self._done.append(Operation(client, key, op, args, result, call, time))

    def fail(self, handle: int) -> None:
        self._open.pop(handle)

    def unknown(self, handle: int) -> None:
        client, key, op, args, call = self._open.pop(handle)
        self._done.append(Operation(client, key, op, args, UNKNOWN, call, math.inf))

    def is_open(self, handle: int) -> bool:
        return handle in self._open

    def operations(self) -> list[Operation]:
        for handle in list(self._open):
            self.unknown(handle)
        return list(self._done)
