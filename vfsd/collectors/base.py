"""The collector interface: what a Props or Status plugin implements.

A collector is an object with four things:

``name``
    Its name; the entry point's name in group ``vfsd.collectors`` wins over the
    attribute, so configuration (``[collectors.<name>]``) and health
    (``/itg/<node>/collectors/<name>``) always use the name it was registered under.
``kind``
    ``"props"`` (inventory, rarely changing: written under ``/hw/<node>``) or
    ``"status"`` (load, every few seconds: written under ``/sum/<node>``).
``interval_s``
    Seconds between collections (``[collectors.<name>] interval_s`` overrides it).
``collect(now_s) -> documents``
    Called in a worker thread, never on the event loop, so it may block on
    ``/proc``, NVML or a slow mount (up to ``timeout_s``). ``now_s`` is a
    monotonic timestamp in seconds, for computing rates; it is not wall time.
    It returns *every* document the collector owns right now, as a mapping
    from a sub-path relative to ``/hw/<node>`` or ``/sum/<node>`` to a JSON
    object (a dict of str keys and JSON values; units go last in field names:
    ``memory_total_bytes``, ``cpu_percent``)::

        {"cpu": {...}}            -> /hw/<node>/cpu
        {"disks/sda1": {...}}     -> /hw/<node>/disks/sda1
        {"": {...}}               -> merged into /hw/<node> itself

    The ``""`` document is the collector's contribution to the node's summary
    document: the runner deep-merges the contributions of every collector of
    the same kind (in name order) into ``/hw/<node>`` or ``/sum/<node>``. A
    document returned last time but not this time is deleted (an unplugged
    disk). Only documents whose content changed are written.

A collector may raise; the runner records the failure in
``/itg/<node>/collectors/<name>`` and retries with backoff. ``close()`` is
called once when the node stops (release NVML and the like).

Subclassing ``Collector`` is a convenience, not a requirement: any object with
these attributes works. An entry point may name a class, a factory function or
an instance; a class or factory is called with the collector's options from
``[collectors.<name>]`` (every key except ``enabled``, ``interval_s`` and
``timeout_s``) as keyword arguments.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Final

PROPS: Final = "props"
STATUS: Final = "status"
KINDS: Final = (PROPS, STATUS)

#: The root each kind writes under; health goes under ``/itg``.
ROOTS: Final = {PROPS: "/hw", STATUS: "/sum"}
HEALTH_ROOT: Final = "/itg"

#: What ``collect`` returns: sub-path -> JSON object.
Documents = Mapping[str, Mapping[str, Any]]


class Collector(abc.ABC):
    """Base class for collectors; see the module docstring for the contract."""

    name: str = ""
    kind: str = STATUS
    interval_s: float = 5.0

    @abc.abstractmethod
    def collect(self, now_s: float) -> Documents:
        """Every document this collector owns now (sub-path -> JSON object)."""

    def close(self) -> None:  # noqa: B027  (an optional hook: most collectors hold nothing)
        """Release resources (called once, when the node stops)."""
