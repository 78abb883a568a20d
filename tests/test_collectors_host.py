"""The built-in host collectors, checked against psutil's own answers."""

from __future__ import annotations

import os
import socket
import time
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from vfsd.collectors.documents import check_documents
from vfsd.collectors.props import PropsCollector, disk_key, parse_cpuinfo
from vfsd.collectors.status import StatusCollector

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
flags\t\t: fpu sse4_2 avx avx2 avx512f amx_tile sha_ni vmx fake_flag

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 1
flags\t\t: fpu sse4_2 avx avx2 avx512f amx_tile sha_ni vmx fake_flag
"""

CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve sve2
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_x86_and_arm() -> None:
    x86 = parse_cpuinfo(CPUINFO_X86)
    assert x86["model"] == "Intel(R) Xeon(R) Platinum 8480+" and x86["vendor"] == "GenuineIntel"
    assert x86["sockets"] == 2
    assert x86["flags"] == ["amx_tile", "avx", "avx2", "avx512f", "sha_ni", "sse4_2", "vmx"]
    arm = parse_cpuinfo(CPUINFO_ARM)
    assert arm["vendor"] == "0x41" and "sockets" not in arm
    assert arm["flags"] == ["aes", "asimd", "atomics", "crc32", "pmull", "sha1", "sha2", "sve", "sve2"]


def test_props_match_psutil() -> None:
    docs = check_documents(PropsCollector().collect(0.0))
    cpu = docs["cpu"]
    assert cpu["logical_cores"] == psutil.cpu_count()
    if psutil.cpu_count(logical=False):
        assert cpu["physical_cores"] == psutil.cpu_count(logical=False)
    assert isinstance(cpu["flags"], list) and cpu["architecture"]
    assert docs["memory"]["memory_total_bytes"] == psutil.virtual_memory().total
    assert docs["memory"]["swap_total_bytes"] == psutil.swap_memory().total
    assert docs["os"]["boot_time_seconds"] == int(psutil.boot_time())
    assert docs["os"]["kernel"] == os.uname().release
    for part in psutil.disk_partitions(all=False):
        disk = docs[f"disks/{disk_key(part.device)}"]
        assert part.mountpoint in disk["mountpoints"] and disk["device"] == part.device
        assert disk["total_bytes"] == psutil.disk_usage(disk["mountpoint"]).total
    for name, stats in psutil.net_if_stats().items():
        nic = docs[f"net/{name}"]
        assert nic["mtu_bytes"] == stats.mtu
    addrs = [a.address for a in psutil.net_if_addrs().get("lo", []) if a.family == socket.AF_INET]
    if addrs:
        assert any(cidr.startswith(addrs[0] + "/") for cidr in docs["net/lo"]["ipv4_addresses"])
    node = docs[""]
    assert node["capacity"]["cpu_cores"] == psutil.cpu_count()
    assert node["capacity"]["memory_bytes"] == psutil.virtual_memory().total
    assert node["allocatable"] == node["capacity"]


def test_props_allocatable_subtracts_reservations() -> None:
    node = PropsCollector(reserved_cpu_cores=0.5, reserved_memory_bytes=1 << 20).collect(0.0)[""]
    assert node["allocatable"]["cpu_cores"] == psutil.cpu_count() - 0.5
    assert node["allocatable"]["memory_bytes"] == psutil.virtual_memory().total - (1 << 20)
    with pytest.raises(ValueError, match="reserved_cpu_cores"):
        PropsCollector(reserved_cpu_cores=-1)


def test_props_are_stable_between_collections() -> None:
    """Inventory must not churn: two collections in a row give identical documents (so nothing is rewritten)."""
    collector = PropsCollector()
    assert check_documents(collector.collect(0.0)) == check_documents(collector.collect(1.0))


def test_status_matches_psutil_and_computes_rates_on_the_second_collection() -> None:
    collector = StatusCollector()
    first = check_documents(collector.collect(100.0))
    assert "cpu_percent" not in first["cpu"] and "cpu_percent" not in first[""]
    assert first["cpu"]["logical_cores"] == psutil.cpu_count()
    assert first["memory"]["memory_total_bytes"] == psutil.virtual_memory().total
    assert first["swap"]["swap_total_bytes"] == psutil.swap_memory().total
    # CPU times tick every 10 ms: burn a little CPU until the kernel's accounting moved (bounded).
    deadline = time.monotonic() + 10.0
    now_s = 100.0
    while True:
        sum(range(200_000))
        now_s += 1.0
        second = check_documents(collector.collect(now_s))
        if {"cpu_percent", "per_cpu_percent"} <= second["cpu"].keys() or time.monotonic() > deadline:
            break
    cpu = second["cpu"]
    assert 0.0 <= cpu["cpu_percent"] <= 100.0
    assert len(cpu["per_cpu_percent"]) == psutil.cpu_count()
    assert cpu["process_count"] > 0
    assert "context_switches_per_second" in cpu
    for name in psutil.net_io_counters(pernic=True):
        assert second[f"net/{name}"]["receive_bytes_per_second"] >= 0
    summary = second[""]
    for field in ("cpu_percent", "load1", "memory_available_bytes", "memory_used_percent", "process_count"):
        assert field in summary
    for part in psutil.disk_partitions(all=False):
        disk = second[f"disks/{disk_key(part.device)}"]
        assert disk["total_bytes"] == psutil.disk_usage(disk["mountpoint"]).total


class FakePsutil:
    """Just enough of psutil for the status collector, with counters a test controls."""

    def __init__(self) -> None:
        self.rx = 0
        self.cpu = dict(user=0.0, nice=0.0, system=0.0, idle=0.0, iowait=0.0)

    def _times(self) -> Any:
        return SimpleNamespace(_asdict=lambda: dict(self.cpu))

    def cpu_times(self, percpu: bool = False) -> Any:
        return [self._times()] if percpu else self._times()

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.25, 0.125)

    def cpu_freq(self) -> None:
        return None

    def cpu_stats(self) -> Any:
        return SimpleNamespace(ctx_switches=0, interrupts=0)

    def pids(self) -> list[int]:
        return [1, 2, 3]

    def virtual_memory(self) -> Any:
        return SimpleNamespace(total=1000, available=250, used=700, free=50)

    def swap_memory(self) -> Any:
        return SimpleNamespace(total=0, used=0, free=0, percent=0.0, sin=0, sout=0)

    def disk_io_counters(self, perdisk: bool, nowrap: bool) -> dict[str, Any]:
        return {}

    def disk_partitions(self, all: bool) -> list[Any]:
        return []

    def net_io_counters(self, pernic: bool, nowrap: bool) -> dict[str, Any]:
        return {"eth0": SimpleNamespace(bytes_recv=self.rx, bytes_sent=0, packets_recv=0, packets_sent=0,
                                        errin=0, errout=0, dropin=0, dropout=0)}

    def net_if_stats(self) -> dict[str, Any]:
        return {"eth0": SimpleNamespace(isup=True, flags="up,running")}


def test_status_rates_from_synthetic_counters_with_a_reset() -> None:
    ps = FakePsutil()
    collector = StatusCollector(psutil_module=ps)
    ps.rx = 1_000_000
    collector.collect(0.0)
    ps.rx, ps.cpu = 1_500_000, dict(user=30.0, nice=0.0, system=10.0, idle=50.0, iowait=10.0)
    docs = collector.collect(5.0)
    assert docs["net/eth0"]["receive_bytes_per_second"] == 100_000.0
    assert docs[""]["network_receive_bytes_per_second"] == 100_000.0
    assert docs["cpu"]["cpu_percent"] == 40.0 and docs[""]["cpu_percent"] == 40.0
    assert docs[""]["memory_used_percent"] == 75.0
    ps.rx = 20_000  # the interface was re-created: its counter restarted
    docs = collector.collect(10.0)
    assert docs["net/eth0"]["receive_bytes_per_second"] == 4_000.0
