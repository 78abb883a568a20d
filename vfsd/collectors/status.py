"""Status: the node's load, written under ``/sum/<node>`` every few seconds.

=================  ===============================================================
``cpu``            utilisation overall, per core and per mode, load averages,
                   current frequency, context switches and interrupts per second,
                   process count
``memory``         total/available/used/free/cached/buffers bytes, used percent
``swap``           total/used/free bytes, used percent, pages swapped in/out per second
``disks/<dev>``    usage of the device's (shortest) mount point, I/O rates, busy percent
``net/<iface>``    link up, bytes/packets/errors/drops per second in each direction
``""``             ``/sum/<node>``: the few numbers a scheduler reads first
=================  ===============================================================

Rates and CPU percentages come from counter deltas between this collection
and the previous one (``vfsd.collectors.rates``: a counter that went down is a
reset). The first collection after start has nothing to compare with, so its
documents carry no rate fields rather than zeros. Percentages are rounded to
0.1 and rates to 0.1/s, so a quiet device's document stays byte-identical and
is not rewritten.

``memory_used_percent`` is ``(total - available) / total`` (what the kernel
could not hand to a new workload without reclaim); ``used_percent`` of a disk
is ``used / (used + free)``, as ``df`` prints it (the root-reserved blocks are
not available to workloads either).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psutil  # type: ignore[import-untyped]

from vfsd.collectors.base import STATUS, Collector, Documents
from vfsd.collectors.documents import safe_segment
from vfsd.collectors.props import mounted_devices
from vfsd.collectors.rates import CounterRates, cpu_percentages

_NET_FIELDS = (
    ("bytes_recv", "receive_bytes_per_second"),
    ("bytes_sent", "transmit_bytes_per_second"),
    ("packets_recv", "receive_packets_per_second"),
    ("packets_sent", "transmit_packets_per_second"),
    ("errin", "receive_errors_per_second"),
    ("errout", "transmit_errors_per_second"),
    ("dropin", "receive_drops_per_second"),
    ("dropout", "transmit_drops_per_second"),
)
_DISK_FIELDS = (
    ("read_bytes", "read_bytes_per_second"),
    ("write_bytes", "write_bytes_per_second"),
    ("read_count", "reads_per_second"),
    ("write_count", "writes_per_second"),
)


def _r(value: float) -> float:
    return round(value, 1)


class StatusCollector(Collector):
    name = "status"
    kind = STATUS
    interval_s = 5.0

    def __init__(self, *, psutil_module: Any = None) -> None:
        self.ps = psutil_module or psutil
        self.rates = CounterRates()
        self._cpu_prev: dict[str, float] | None = None
        self._percpu_prev: list[dict[str, float]] | None = None

    def collect(self, now_s: float) -> Documents:
        seen: list[Any] = []
        docs: dict[str, Mapping[str, Any]] = {}
        cpu = self.cpu(now_s, seen)
        memory, swap = self.memory(now_s, seen)
        docs["cpu"] = cpu
        docs["memory"] = memory
        docs["swap"] = swap
        for key, disk in self.disks(now_s, seen).items():
            docs[f"disks/{key}"] = disk
        net = self.network(now_s, seen)
        for name, nic in net.items():
            docs[f"net/{name}"] = nic
        self.rates.retain(seen)

        summary: dict[str, Any] = {}
        for field in ("cpu_percent", "load1", "load5", "load15"):
            if field in cpu:
                summary[field] = cpu[field]
        summary["memory_available_bytes"] = memory["memory_available_bytes"]
        summary["memory_used_percent"] = memory["memory_used_percent"]
        summary["swap_used_percent"] = swap["swap_used_percent"]
        external = [nic for nic in net.values() if not nic.get("loopback")]
        for field in ("receive_bytes_per_second", "transmit_bytes_per_second"):
            values = [nic[field] for nic in external if field in nic]
            if values and len(values) == len(external):
                summary["network_" + field] = _r(sum(values))
        summary["process_count"] = cpu["process_count"]
        docs[""] = summary
        return docs

    # -- parts -------------------------------------------------------------------

    def cpu(self, now_s: float, seen: list[Any]) -> dict[str, Any]:
        ps = self.ps
        doc: dict[str, Any] = {}
        times = ps.cpu_times()._asdict()
        if self._cpu_prev is not None:
            pct = cpu_percentages(self._cpu_prev, times)
            if pct is not None:
                doc.update({k: _r(v) for k, v in sorted(pct.items())})
        self._cpu_prev = times
        per = [t._asdict() for t in ps.cpu_times(percpu=True)]
        if self._percpu_prev is not None and len(self._percpu_prev) == len(per):
            cores = [cpu_percentages(a, b) for a, b in zip(self._percpu_prev, per)]
            if all(c is not None for c in cores):
                doc["per_cpu_percent"] = [_r(c["cpu_percent"]) for c in cores if c is not None]
        self._percpu_prev = per
        doc["logical_cores"] = len(per)
        load1, load5, load15 = ps.getloadavg() if hasattr(ps, "getloadavg") else os.getloadavg()
        doc["load1"], doc["load5"], doc["load15"] = round(load1, 2), round(load5, 2), round(load15, 2)
        try:
            freq = ps.cpu_freq()
        except (OSError, NotImplementedError, AttributeError):
            freq = None
        if freq is not None and freq.current:
            doc["frequency_hz"] = int(freq.current * 1e6)
        stats = ps.cpu_stats()
        for counter, field in (("ctx_switches", "context_switches_per_second"), ("interrupts", "interrupts_per_second")):
            key = ("cpu", counter)
            seen.append(key)
            rate = self.rates.rate(key, getattr(stats, counter), now_s)
            if rate is not None:
                doc[field] = _r(rate)
        doc["process_count"] = len(ps.pids())
        return doc

    def memory(self, now_s: float, seen: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        vm = self.ps.virtual_memory()
        memory: dict[str, Any] = {
            "memory_total_bytes": vm.total,
            "memory_available_bytes": vm.available,
            "memory_used_bytes": vm.used,
            "memory_free_bytes": vm.free,
            "memory_used_percent": _r(100.0 * (vm.total - vm.available) / vm.total) if vm.total else 0.0,
        }
        for attr in ("cached", "buffers"):
            if hasattr(vm, attr):
                memory[f"memory_{attr}_bytes"] = getattr(vm, attr)
        sw = self.ps.swap_memory()
        swap: dict[str, Any] = {
            "swap_total_bytes": sw.total,
            "swap_used_bytes": sw.used,
            "swap_free_bytes": sw.free,
            "swap_used_percent": _r(sw.percent),
        }
        for counter, field in (("sin", "swap_in_bytes_per_second"), ("sout", "swap_out_bytes_per_second")):
            key = ("swap", counter)
            seen.append(key)
            rate = self.rates.rate(key, getattr(sw, counter), now_s)
            if rate is not None:
                swap[field] = _r(rate)
        return memory, swap

    def disks(self, now_s: float, seen: list[Any]) -> dict[str, dict[str, Any]]:
        ps = self.ps
        try:
            io = ps.disk_io_counters(perdisk=True, nowrap=False) or {}
        except (OSError, RuntimeError):
            io = {}
        out: dict[str, dict[str, Any]] = {}
        for key, dev in mounted_devices(ps).items():
            doc: dict[str, Any] = {"device": dev["device"], "mountpoint": dev["mountpoint"]}
            try:
                usage = ps.disk_usage(dev["mountpoint"])
            except OSError:
                usage = None
            if usage is not None:
                doc.update(total_bytes=usage.total, used_bytes=usage.used, free_bytes=usage.free,
                           used_percent=_r(usage.percent))
            counters = io.get(os.path.basename(os.path.realpath(dev["device"])))
            if counters is not None:
                for counter, field in _DISK_FIELDS:
                    rate_key = ("disk", key, counter)
                    seen.append(rate_key)
                    rate = self.rates.rate(rate_key, getattr(counters, counter), now_s)
                    if rate is not None:
                        doc[field] = _r(rate)
                busy_ms = getattr(counters, "busy_time", None)
                if busy_ms is not None:
                    rate_key = ("disk", key, "busy_time")
                    seen.append(rate_key)
                    rate = self.rates.rate(rate_key, busy_ms, now_s)  # ms busy per second
                    if rate is not None:
                        doc["io_busy_percent"] = _r(min(100.0, rate / 10.0))
            out[key] = doc
        return out

    def network(self, now_s: float, seen: list[Any]) -> dict[str, dict[str, Any]]:
        ps = self.ps
        counters = ps.net_io_counters(pernic=True, nowrap=False) or {}
        stats = ps.net_if_stats()
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(counters):
            c = counters[name]
            st = stats.get(name)
            doc: dict[str, Any] = {"up": bool(st.isup) if st is not None else False}
            doc["loopback"] = name == "lo" or (st is not None and "loopback" in (getattr(st, "flags", "") or "").split(","))
            for counter, field in _NET_FIELDS:
                key = ("net", name, counter)
                seen.append(key)
                rate = self.rates.rate(key, getattr(c, counter), now_s)
                if rate is not None:
                    doc[field] = _r(rate)
            out[safe_segment(name)] = doc
        return out
