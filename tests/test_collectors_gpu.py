"""The NVML collectors against a fake ``pynvml``: several GPUs, MIG, driver errors, no pynvml at all."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from vfsd.collectors.documents import check_documents
from vfsd.collectors.gpu import NOT_INSTALLED, GpuPropsCollector, GpuStatusCollector
from vfsd.collectors.registry import Plugin, instantiate

NOT_SUPPORTED, NOT_FOUND, DRIVER_NOT_LOADED, GPU_IS_LOST = 3, 6, 9, 15
GiB = 1 << 30


class NVMLError(Exception):
    """As pynvml's: carries the NVML return code in ``value``."""

    NAMES = {NOT_SUPPORTED: "Not Supported", NOT_FOUND: "Not Found", DRIVER_NOT_LOADED: "Driver Not Loaded",
             GPU_IS_LOST: "GPU is lost"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self.NAMES.get(self.value, f"NVML error {self.value}")


def fake_pynvml(gpus: list[dict[str, Any]], *, init_error: int | None = None) -> ModuleType:
    """A module with pynvml's names, answering from ``gpus`` (dicts; missing keys answer NOT_SUPPORTED)."""
    m = ModuleType("pynvml")
    m.NVMLError = NVMLError  # type: ignore[attr-defined]
    m.NVML_ERROR_NOT_SUPPORTED, m.NVML_ERROR_NOT_FOUND = NOT_SUPPORTED, NOT_FOUND  # type: ignore[attr-defined]
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_SM, m.NVML_DEVICE_MIG_ENABLE = 0, 1, 1  # type: ignore[attr-defined]
    m.calls = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]

    def init() -> None:
        m.calls["init"] += 1  # type: ignore[attr-defined]
        if init_error is not None:
            raise NVMLError(init_error)

    def shutdown() -> None:
        m.calls["shutdown"] += 1  # type: ignore[attr-defined]

    def field(name: str) -> Any:
        def get(handle: Any, *args: Any) -> Any:
            value = handle.get(name, NVMLError(NOT_SUPPORTED))
            if isinstance(value, Exception):
                raise value
            return value
        return get

    def handle_by_index(i: int) -> Any:
        gpu = gpus[i]
        if isinstance(gpu, Exception):
            raise gpu
        return gpu

    def mig_handle(handle: Any, i: int) -> Any:
        migs = handle.get("migs", [])
        if i >= len(migs) or migs[i] is None:
            raise NVMLError(NOT_FOUND)
        return migs[i]

    m.nvmlInit, m.nvmlShutdown = init, shutdown  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: "550.54.15"  # type: ignore[attr-defined]
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040  # type: ignore[attr-defined]
    m.nvmlSystemGetNVMLVersion = lambda: "12.550.54.15"  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = handle_by_index  # type: ignore[attr-defined]
    for fn, name in [("Name", "name"), ("UUID", "uuid"), ("PciInfo", "pci"), ("MemoryInfo", "memory"),
                     ("CudaComputeCapability", "cc"), ("EnforcedPowerLimit", "power_limit_mw"),
                     ("MigMode", "mig_mode"), ("MaxMigDeviceCount", "max_migs"), ("UtilizationRates", "util"),
                     ("Temperature", "temperature"), ("PowerUsage", "power_mw"), ("ClockInfo", "sm_mhz")]:
        setattr(m, f"nvmlDeviceGet{fn}", field(name))
    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle  # type: ignore[attr-defined]
    return m


def h100(index: int, **extra: Any) -> dict[str, Any]:
    gpu = {
        "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{index:08d}-aaaa", "pci": SimpleNamespace(busId=f"00000000:{index:02X}:00.0"),
        "memory": SimpleNamespace(total=80 * GiB, used=(index + 1) * GiB, free=(79 - index) * GiB),
        "cc": (9, 0), "power_limit_mw": 700_000, "mig_mode": [0, 0],
        "util": SimpleNamespace(gpu=10 * (index + 1), memory=5), "temperature": 40 + index, "power_mw": 123_456,
        "sm_mhz": 1980,
    }
    gpu.update(extra)
    return gpu


def test_several_gpus() -> None:
    nvml = fake_pynvml([h100(0), h100(1), h100(2)])
    props = check_documents(GpuPropsCollector(nvml=nvml).collect(0.0))
    assert props["gpu"] == {"driver_available": True, "driver_version": "550.54.15", "cuda_driver_version": "12.4",
                            "nvml_version": "12.550.54.15", "gpu_count": 3}
    assert props["gpus/1"] == {
        "index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000001-aaaa", "pci_bus_id": "00000000:01:00.0",
        "memory_total_bytes": 80 * GiB, "compute_capability": "9.0", "power_limit_watts": 700.0,
        "mig_enabled": False, "mig_pending_enabled": False,
    }
    assert props[""] == {"capacity": {"gpus": 3}, "allocatable": {"gpus": 3}}
    status = check_documents(GpuStatusCollector(nvml=nvml).collect(0.0))
    assert status["gpus/2"] == {
        "index": 2, "utilization_percent": 30.0, "memory_utilization_percent": 5.0, "memory_total_bytes": 80 * GiB,
        "memory_used_bytes": 3 * GiB, "memory_free_bytes": 77 * GiB, "temperature_celsius": 42.0,
        "power_watts": 123.5, "sm_clock_hz": 1_980_000_000,
    }
    assert status[""] == {"gpu_count": 3, "gpu_utilization_percent": 20.0, "gpu_memory_used_bytes": 6 * GiB,
                          "gpu_memory_total_bytes": 240 * GiB}


def test_mig_enabled_gpu_lists_its_instances_and_omits_unsupported_utilisation() -> None:
    migs = [{"uuid": "MIG-0", "memory": SimpleNamespace(total=10 * GiB, used=GiB, free=9 * GiB)}, None,
            {"uuid": "MIG-2", "memory": SimpleNamespace(total=20 * GiB, used=2 * GiB, free=18 * GiB)}]
    gpu = h100(0, mig_mode=[1, 1], max_migs=3, migs=migs)
    del gpu["util"]  # NVML answers NOT_SUPPORTED for utilisation of a GPU in MIG mode
    nvml = fake_pynvml([gpu, h100(1, mig_mode=[0, 1])])
    props = GpuPropsCollector(nvml=nvml).collect(0.0)
    assert props["gpus/0"]["mig_enabled"] is True
    assert props["gpus/0"]["mig_devices"] == [{"index": 0, "uuid": "MIG-0", "memory_total_bytes": 10 * GiB},
                                              {"index": 2, "uuid": "MIG-2", "memory_total_bytes": 20 * GiB}]
    assert (props["gpus/1"]["mig_enabled"], props["gpus/1"]["mig_pending_enabled"]) == (False, True)
    assert "error" not in props["gpus/0"]
    status = GpuStatusCollector(nvml=nvml).collect(0.0)
    assert "utilization_percent" not in status["gpus/0"] and "error" not in status["gpus/0"]
    assert status["gpus/0"]["mig_devices"] == [{"index": 0, "uuid": "MIG-0", "memory_used_bytes": GiB},
                                               {"index": 2, "uuid": "MIG-2", "memory_used_bytes": 2 * GiB}]
    assert status[""]["gpu_utilization_percent"] == 20.0  # only the GPU that reports utilisation counts


def test_driver_not_loaded_means_zero_gpus_not_a_failure() -> None:
    nvml = fake_pynvml([h100(0)], init_error=DRIVER_NOT_LOADED)
    props = GpuPropsCollector(nvml=nvml).collect(0.0)
    assert props["gpu"] == {"driver_available": False, "gpu_count": 0, "error": "NVML unavailable: Driver Not Loaded"}
    assert props[""] == {"capacity": {"gpus": 0}, "allocatable": {"gpus": 0}}
    status = GpuStatusCollector(nvml=nvml)
    assert status.collect(0.0) == {"": {"gpu_count": 0}}
    status.collect(5.0)
    assert nvml.calls["init"] == 3  # tried again at every collection: a driver can be loaded later
    status.close()
    assert nvml.calls["shutdown"] == 0  # never initialised, nothing to release


def test_a_lost_gpu_is_reported_without_hiding_the_others() -> None:
    nvml = fake_pynvml([h100(0, temperature=NVMLError(GPU_IS_LOST)), NVMLError(GPU_IS_LOST), h100(2)])
    status = GpuStatusCollector(nvml=nvml).collect(0.0)
    assert status["gpus/0"]["error"] == "temperature: GPU is lost" and "temperature_celsius" not in status["gpus/0"]
    assert status["gpus/0"]["utilization_percent"] == 10.0
    assert status["gpus/1"] == {"index": 1, "error": "GPU is lost"}
    assert status["gpus/2"]["temperature_celsius"] == 42.0
    assert status[""]["gpu_count"] == 3


def test_no_pynvml_installed_means_zero_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    collector = instantiate(Plugin("gpu_props", "vfsd.collectors.gpu:GpuPropsCollector", "built-in",
                                   lambda: GpuPropsCollector))
    docs = collector.collect(0.0)
    assert docs["gpu"] == {"driver_available": False, "gpu_count": 0, "error": NOT_INSTALLED}
    assert GpuStatusCollector().collect(0.0) == {"": {"gpu_count": 0}}


def test_the_real_pynvml_is_imported_lazily_and_shut_down_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([h100(0)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    props, status = GpuPropsCollector(), GpuStatusCollector()
    assert nvml.calls["init"] == 0
    assert props.collect(0.0)["gpu"]["gpu_count"] == 1
    assert status.collect(0.0)[""]["gpu_count"] == 1
    status.collect(1.0)
    assert nvml.calls["init"] == 2  # once per collector; NVML reference-counts init/shutdown
    props.close()
    status.close()
    status.close()
    assert nvml.calls["shutdown"] == 2
