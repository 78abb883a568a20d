"""GPUs through NVML (``pynvml``, from the ``nvidia-ml-py`` package: ``pip install 'vfsd[gpu]'``).

Two collectors share this module: ``gpu_props`` (inventory, under ``/hw``) and
``gpu_status`` (load, under ``/sum``), with DCGM exporter's metrics under
names that carry their units:

``/hw/<node>/gpu``
    ``driver_available``, ``driver_version``, ``cuda_driver_version``,
    ``nvml_version``, ``gpu_count`` (and ``error`` when NVML is unusable)
``/hw/<node>/gpus/<index>``
    ``name``, ``uuid``, ``pci_bus_id``, ``memory_total_bytes``,
    ``compute_capability``, ``power_limit_watts``, ``mig_enabled``,
    ``mig_pending_enabled``, ``mig_devices`` (uuid and memory of each MIG instance)
``/sum/<node>/gpus/<index>``
    ``utilization_percent`` (DCGM_FI_DEV_GPU_UTIL), ``memory_utilization_percent``
    (DCGM_FI_DEV_MEM_COPY_UTIL), ``memory_used_bytes``/``memory_free_bytes``
    (DCGM_FI_DEV_FB_USED/FREE, which DCGM reports in MiB), ``temperature_celsius``
    (DCGM_FI_DEV_GPU_TEMP), ``power_watts`` (DCGM_FI_DEV_POWER_USAGE),
    ``sm_clock_hz`` (DCGM_FI_DEV_SM_CLOCK, MHz in DCGM)

No ``pynvml``, no driver, or an NVML that fails to initialise is not a
failure: the node has zero GPUs (``gpu_count: 0``, ``driver_available:
false`` and the reason in ``error``), and initialisation is tried again at
the next collection (a driver can be loaded later). A query a device does not
support (utilisation of a GPU in MIG mode, power on some boards) leaves its
field out; any other error on one device goes into that device's ``error``
field without hiding the other devices. NVML reference-counts
``nvmlInit``/``nvmlShutdown``, so the two collectors each hold their own
initialisation and release it in ``close()``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from vfsd.collectors.base import PROPS, STATUS, Collector, Documents

NOT_INSTALLED = "pynvml is not installed (pip install 'vfsd[gpu]' installs nvidia-ml-py)"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(value: int) -> str:
    """NVML's CUDA driver version integer (12040) as CUDA prints it (12.4)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


class Nvml:
    """An NVML session: a lazy import and ``nvmlInit``, re-tried after failure, released by ``close``."""

    def __init__(self, module: Any = None, importer: Callable[[], Any] | None = None) -> None:
        self._module = module
        self._importer = importer or (lambda: importlib.import_module("pynvml"))
        self._import_failed = False
        self._initialised = False
        self._lock = threading.Lock()

    def session(self) -> tuple[Any, str | None]:
        """(the pynvml module, None) when NVML is initialised, else (None, why not)."""
        with self._lock:
            if self._module is None:
                if self._import_failed:
                    return None, NOT_INSTALLED
                try:
                    self._module = self._importer()
                except ImportError:
                    self._import_failed = True  # an import that failed once fails again: do not rescan sys.path
                    return None, NOT_INSTALLED
            if not self._initialised:
                try:
                    self._module.nvmlInit()
                except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
                    return None, f"NVML unavailable: {_text(exc) or type(exc).__name__}"
                self._initialised = True
            return self._module, None

    def reset(self) -> None:
        """Drop the session after an NVML-wide error, so the next collection initialises again."""
        with self._lock:
            self._shutdown()

    def close(self) -> None:
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._module.nvmlShutdown()
            except Exception:
                pass


class _Queries:
    """Calls into NVML for one device, collecting errors instead of raising them."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.errors: list[str] = []
        self._error_type = getattr(nvml, "NVMLError", Exception)
        self._not_supported = {getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3), getattr(nvml, "NVML_ERROR_NOT_FOUND", 6)}

    def __call__(self, what: str, fn_name: str, *args: Any) -> Any:
        fn = getattr(self.nvml, fn_name, None)
        if fn is None:  # an older binding without this call
            return None
        try:
            return fn(*args)
        except self._error_type as exc:
            if getattr(exc, "value", None) not in self._not_supported:
                self.errors.append(f"{what}: {_text(exc)}")
            return None


def _driver_doc(nvml: Any) -> dict[str, Any]:
    q = _Queries(nvml)
    doc: dict[str, Any] = {"driver_available": True}
    driver = q("driver version", "nvmlSystemGetDriverVersion")
    if driver is not None:
        doc["driver_version"] = _text(driver)
    cuda = q("CUDA driver version", "nvmlSystemGetCudaDriverVersion")
    if cuda is not None:
        doc["cuda_driver_version"] = _cuda_version(int(cuda))
    version = q("NVML version", "nvmlSystemGetNVMLVersion")
    if version is not None:
        doc["nvml_version"] = _text(version)
    return doc


def _device_props(nvml: Any, index: int, handle: Any) -> dict[str, Any]:
    q = _Queries(nvml)
    doc: dict[str, Any] = {"index": index}
    for field, fn in (("name", "nvmlDeviceGetName"), ("uuid", "nvmlDeviceGetUUID")):
        value = q(field, fn, handle)
        if value is not None:
            doc[field] = _text(value)
    pci = q("pci", "nvmlDeviceGetPciInfo", handle)
    if pci is not None and getattr(pci, "busId", None) is not None:
        doc["pci_bus_id"] = _text(pci.busId)
    memory = q("memory", "nvmlDeviceGetMemoryInfo", handle)
    if memory is not None:
        doc["memory_total_bytes"] = int(memory.total)
    cc = q("compute capability", "nvmlDeviceGetCudaComputeCapability", handle)
    if cc is not None:
        doc["compute_capability"] = f"{cc[0]}.{cc[1]}"
    limit = q("power limit", "nvmlDeviceGetEnforcedPowerLimit", handle)
    if limit is not None:
        doc["power_limit_watts"] = round(limit / 1000.0, 1)
    mig = q("MIG mode", "nvmlDeviceGetMigMode", handle)
    enable = getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
    doc["mig_enabled"] = bool(mig is not None and mig[0] == enable)
    if mig is not None:
        doc["mig_pending_enabled"] = mig[1] == enable
    if doc["mig_enabled"]:
        doc["mig_devices"] = [
            {k: v for k, v in m.items() if k != "memory_used_bytes"} for m in _mig_devices(nvml, q, handle)
        ]
    if q.errors:
        doc["error"] = "; ".join(q.errors)
    return doc


def _mig_devices(nvml: Any, q: _Queries, handle: Any) -> list[dict[str, Any]]:
    out = []
    count = q("MIG device count", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    for i in range(int(count)):
        mig = q(f"MIG device {i}", "nvmlDeviceGetMigDeviceHandleByIndex", handle, i)
        if mig is None:
            continue  # an empty slot answers NOT_FOUND
        entry: dict[str, Any] = {"index": i}
        uuid = q(f"MIG device {i} uuid", "nvmlDeviceGetUUID", mig)
        if uuid is not None:
            entry["uuid"] = _text(uuid)
        memory = q(f"MIG device {i} memory", "nvmlDeviceGetMemoryInfo", mig)
        if memory is not None:
            entry["memory_total_bytes"] = int(memory.total)
            entry["memory_used_bytes"] = int(memory.used)
        out.append(entry)
    return out


def _device_status(nvml: Any, index: int, handle: Any) -> dict[str, Any]:
    q = _Queries(nvml)
    doc: dict[str, Any] = {"index": index}
    util = q("utilization", "nvmlDeviceGetUtilizationRates", handle)
    if util is not None:
        doc["utilization_percent"] = float(util.gpu)
        doc["memory_utilization_percent"] = float(util.memory)
    memory = q("memory", "nvmlDeviceGetMemoryInfo", handle)
    if memory is not None:
        doc["memory_total_bytes"] = int(memory.total)
        doc["memory_used_bytes"] = int(memory.used)
        doc["memory_free_bytes"] = int(memory.free)
    temperature = q("temperature", "nvmlDeviceGetTemperature", handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
    if temperature is not None:
        doc["temperature_celsius"] = float(temperature)
    power = q("power", "nvmlDeviceGetPowerUsage", handle)
    if power is not None:
        doc["power_watts"] = round(power / 1000.0, 1)  # NVML reports milliwatts
    clock = q("SM clock", "nvmlDeviceGetClockInfo", handle, getattr(nvml, "NVML_CLOCK_SM", 1))
    if clock is not None:
        doc["sm_clock_hz"] = int(clock) * 1_000_000
    mig = q("MIG mode", "nvmlDeviceGetMigMode", handle)
    if mig is not None and mig[0] == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        doc["mig_devices"] = [
            {k: v for k, v in m.items() if k in ("index", "uuid", "memory_used_bytes")}
            for m in _mig_devices(nvml, q, handle)
        ]
    if q.errors:
        doc["error"] = "; ".join(q.errors)
    return doc


class _GpuCollector(Collector):
    def __init__(self, *, nvml: Any = None, importer: Callable[[], Any] | None = None) -> None:
        self.session = Nvml(nvml, importer)

    def devices(self) -> tuple[Any, list[tuple[int, Any, str | None]], str | None]:
        """(nvml, [(index, handle or None, error)], error): error set when NVML as a whole is unusable."""
        nvml, error = self.session.session()
        if nvml is None:
            return None, [], error
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self.session.reset()
            return None, [], f"NVML device count failed: {_text(exc)}"
        out: list[tuple[int, Any, str | None]] = []
        for index in range(count):
            try:
                out.append((index, nvml.nvmlDeviceGetHandleByIndex(index), None))
            except Exception as exc:
                out.append((index, None, _text(exc) or type(exc).__name__))
        return nvml, out, None

    def close(self) -> None:
        self.session.close()


class GpuPropsCollector(_GpuCollector):
    name = "gpu_props"
    kind = PROPS
    interval_s = 300.0

    def collect(self, now_s: float) -> Documents:
        nvml, devices, error = self.devices()
        docs: dict[str, Mapping[str, Any]] = {}
        if nvml is None:
            docs["gpu"] = {"driver_available": False, "gpu_count": 0, "error": error}
        else:
            docs["gpu"] = {**_driver_doc(nvml), "gpu_count": len(devices)}
        for index, handle, device_error in devices:
            if handle is None:
                docs[f"gpus/{index}"] = {"index": index, "error": device_error}
            else:
                docs[f"gpus/{index}"] = _device_props(nvml, index, handle)
        count = len(devices)
        docs[""] = {"capacity": {"gpus": count}, "allocatable": {"gpus": count}}
        return docs


class GpuStatusCollector(_GpuCollector):
    name = "gpu_status"
    kind = STATUS
    interval_s = 5.0

    def collect(self, now_s: float) -> Documents:
        nvml, devices, _error = self.devices()
        docs: dict[str, Mapping[str, Any]] = {}
        for index, handle, device_error in devices:
            if handle is None:
                docs[f"gpus/{index}"] = {"index": index, "error": device_error}
            else:
                docs[f"gpus/{index}"] = _device_status(nvml, index, handle)
        summary: dict[str, Any] = {"gpu_count": len(devices)}
        utils = [d["utilization_percent"] for d in docs.values() if "utilization_percent" in d]
        if utils:
            summary["gpu_utilization_percent"] = round(sum(utils) / len(utils), 1)
        used = [d["memory_used_bytes"] for d in docs.values() if "memory_used_bytes" in d]
        total = [d["memory_total_bytes"] for d in docs.values() if "memory_total_bytes" in d]
        if used:
            summary["gpu_memory_used_bytes"] = sum(used)
            summary["gpu_memory_total_bytes"] = sum(total)
        docs[""] = summary
        return docs
