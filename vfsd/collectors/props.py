"""Props: the node's inventory, written under ``/hw/<node>``.

What a scheduler needs to know about a machine that changes rarely, named as
node_exporter and Kubernetes' node status name it, with units last:

=================  ===============================================================
``cpu``            model, vendor, architecture, sockets, physical and logical cores,
                   min/max frequency, the CPU flags worth scheduling on (vector
                   ISAs, crypto, virtualisation)
``memory``         memory and swap totals
``disks/<dev>``    one per mounted block device: device, mount points, filesystem, size
``net/<iface>``    addresses (CIDR), MAC, MTU, link speed, duplex
``os``             kernel, distribution, boot time, host name
``""``             ``/hw/<node>`` itself: ``capacity`` and ``allocatable`` (Kubernetes'
                   split: allocatable is capacity less what the operator reserved
                   for the system with ``reserved_cpu_cores``/``reserved_memory_bytes``)
=================  ===============================================================

The runner writes only what changed, so re-collecting every few minutes costs
a handful of ``/proc`` reads and no writes on a machine that did not change.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import platform
import socket
from collections.abc import Mapping
from typing import Any

import psutil  # type: ignore[import-untyped]

import vfsd
from vfsd.collectors.base import PROPS, Collector, Documents
from vfsd.collectors.documents import safe_segment

#: CPU flags a scheduler may place work by: vector ISAs, matrix units, crypto, virtualisation (x86 and Arm names).
SCHEDULING_FLAGS = frozenset(
    """
    sse4_1 sse4_2 popcnt avx avx2 fma f16c bmi1 bmi2 adx avx_vnni avx512f avx512cd avx512bw avx512dq avx512vl
    avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq avx512_bf16 avx512_fp16
    amx_tile amx_bf16 amx_int8 aes vaes pclmulqdq vpclmulqdq sha_ni rdrand rdseed vmx svm hypervisor
    asimd asimddp asimdhp fphp sve sve2 sme i8mm bf16 sha1 sha2 sha3 sha512 crc32 atomics pmull
    """.split()
)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model, vendor, socket count and scheduling flags from Linux's /proc/cpuinfo (x86 or Arm layout)."""
    model = vendor = None
    sockets: set[str] = set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware", "cpu model") and model is None and value:
            model = value
        elif key in ("vendor_id", "CPU implementer", "vendor") and vendor is None and value:
            vendor = value
        elif key == "physical id":
            sockets.add(value)
        elif key in ("flags", "Features"):
            flags.update(value.split())
    out: dict[str, Any] = {"model": model, "vendor": vendor, "flags": sorted(flags & SCHEDULING_FLAGS)}
    if sockets:
        out["sockets"] = len(sockets)
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _sysfs_sockets() -> int | None:
    ids = {_read(p) for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id")}
    ids.discard(None)
    return len(ids) or None


def disk_key(device: str) -> str:
    """The path segment naming a block device: ``/dev/sda1`` -> ``sda1``, ``/dev/mapper/vg-root`` -> ``vg-root``."""
    name = os.path.basename(device) if device.startswith("/dev/") else device
    return safe_segment(name)


def mounted_devices(ps: Any) -> dict[str, dict[str, Any]]:
    """Mounted block devices by ``disk_key``: device, mount points (the shortest first), filesystem, read-only."""
    out: dict[str, dict[str, Any]] = {}
    for part in ps.disk_partitions(all=False):
        key = disk_key(part.device)
        entry = out.setdefault(key, {"device": part.device, "mountpoints": [], "filesystem": part.fstype,
                                     "read_only": "ro" in (part.opts or "").split(",")})
        if part.mountpoint not in entry["mountpoints"]:
            entry["mountpoints"].append(part.mountpoint)
    for entry in out.values():
        entry["mountpoints"].sort(key=lambda m: (len(m), m))
        entry["mountpoint"] = entry["mountpoints"][0]
    return out


def _prefix_length(netmask: str | None) -> int | None:
    if not netmask:
        return None
    try:
        return bin(int(ipaddress.ip_address(netmask))).count("1")
    except ValueError:
        return None


def _cidr(address: str, netmask: str | None) -> str:
    address = address.split("%", 1)[0]  # fe80::1%eth0: the zone is the interface, already the document's name
    prefix = _prefix_length(netmask)
    return address if prefix is None else f"{address}/{prefix}"


_DUPLEX = {getattr(psutil, "NIC_DUPLEX_FULL", 2): "full", getattr(psutil, "NIC_DUPLEX_HALF", 1): "half"}


class PropsCollector(Collector):
    name = "props"
    kind = PROPS
    interval_s = 300.0

    def __init__(self, *, reserved_cpu_cores: float = 0, reserved_memory_bytes: int = 0,
                 psutil_module: Any = None) -> None:
        for option, value in (("reserved_cpu_cores", reserved_cpu_cores), ("reserved_memory_bytes", reserved_memory_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{option} must be a non-negative number, not {value!r}")
        self.reserved_cpu_cores = reserved_cpu_cores
        self.reserved_memory_bytes = int(reserved_memory_bytes)
        self.ps = psutil_module or psutil

    def collect(self, now_s: float) -> Documents:
        ps = self.ps
        docs: dict[str, Mapping[str, Any]] = {}
        cpu = self.cpu()
        memory = {"memory_total_bytes": ps.virtual_memory().total, "swap_total_bytes": ps.swap_memory().total}
        docs["cpu"] = cpu
        docs["memory"] = memory
        docs["os"] = self.os()
        root_bytes = None
        for key, disk in mounted_devices(ps).items():
            try:
                disk["total_bytes"] = ps.disk_usage(disk["mountpoint"]).total
            except OSError:
                pass
            if "/" in disk["mountpoints"]:
                root_bytes = disk.get("total_bytes")
            docs[f"disks/{key}"] = disk
        if root_bytes is None:
            try:
                root_bytes = ps.disk_usage("/").total
            except OSError:
                pass
        for name, nic in self.interfaces().items():
            docs[f"net/{name}"] = nic
        capacity: dict[str, Any] = {"cpu_cores": cpu["logical_cores"], "memory_bytes": memory["memory_total_bytes"]}
        if root_bytes is not None:
            capacity["ephemeral_storage_bytes"] = root_bytes
        allocatable = dict(capacity)
        allocatable["cpu_cores"] = round(max(0.0, capacity["cpu_cores"] - self.reserved_cpu_cores), 3)
        allocatable["memory_bytes"] = max(0, capacity["memory_bytes"] - self.reserved_memory_bytes)
        docs[""] = {"capacity": capacity, "allocatable": allocatable}
        return docs

    def cpu(self) -> dict[str, Any]:
        ps = self.ps
        info = parse_cpuinfo(_read("/proc/cpuinfo") or "")
        doc: dict[str, Any] = {
            "model": info["model"] or platform.processor() or platform.machine(),
            "vendor": info["vendor"],
            "architecture": platform.machine(),
            "logical_cores": ps.cpu_count(logical=True) or 1,
        }
        physical = ps.cpu_count(logical=False)
        if physical:
            doc["physical_cores"] = physical
        sockets = info.get("sockets") or _sysfs_sockets()
        if sockets:
            doc["sockets"] = sockets
        try:
            freq = ps.cpu_freq()
        except (OSError, NotImplementedError, AttributeError):
            freq = None
        if freq is not None:
            if freq.min:
                doc["frequency_min_hz"] = int(freq.min * 1e6)
            if freq.max:
                doc["frequency_max_hz"] = int(freq.max * 1e6)
        doc["flags"] = info["flags"]
        return doc

    def os(self) -> dict[str, Any]:
        uname = platform.uname()
        doc: dict[str, Any] = {
            "system": uname.system,
            "kernel": uname.release,
            "kernel_version": uname.version,
            "architecture": uname.machine,
            "hostname": uname.node,
            "boot_time_seconds": int(self.ps.boot_time()),
            "python_version": platform.python_version(),
            "vfsd_version": vfsd.__version__,
        }
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            release = {}
        for field, key in (("distribution", "PRETTY_NAME"), ("distribution_id", "ID"),
                           ("distribution_version", "VERSION_ID")):
            if release.get(key):
                doc[field] = release[key]
        return doc

    def interfaces(self) -> dict[str, dict[str, Any]]:
        ps = self.ps
        addrs = ps.net_if_addrs()
        stats = ps.net_if_stats()
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(addrs) | set(stats)):
            doc: dict[str, Any] = {"name": name, "ipv4_addresses": [], "ipv6_addresses": []}
            for addr in addrs.get(name, ()):
                if addr.family == socket.AF_INET:
                    doc["ipv4_addresses"].append(_cidr(addr.address, addr.netmask))
                elif addr.family == socket.AF_INET6:
                    doc["ipv6_addresses"].append(_cidr(addr.address, addr.netmask))
                elif addr.family == getattr(psutil, "AF_LINK", None):
                    doc["mac_address"] = addr.address
            st = stats.get(name)
            if st is not None:
                doc["mtu_bytes"] = st.mtu
                if st.speed:
                    doc["speed_bytes_per_second"] = st.speed * 1_000_000 // 8  # psutil reports Mbit/s
                doc["duplex"] = _DUPLEX.get(st.duplex, "unknown")
                doc["loopback"] = "loopback" in (getattr(st, "flags", "") or "").split(",") or name == "lo"
            out[safe_segment(name)] = doc
        return out
