"""The device, its arithmetic settings and its memory figures."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
import warnings

import torch

from .errors import DeviceError


def mps_available() -> bool:
    """Apple's GPU through torch's MPS backend (macOS builds of torch)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str) -> torch.device:
    """``auto``: CUDA, then Apple's MPS, then the CPU."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            note_cpu_fallbacks()
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type == "mps":
        if not mps_available():
            raise DeviceError("--device mps asked for, but this torch has no usable MPS (Apple GPU) "
                              "backend; use --device cpu")
        note_cpu_fallbacks()
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r}; expected auto, cpu, cuda, cuda:N or mps")
    return device


_MPS_FALLBACK = re.compile(r"operator '([^']+)' is not currently (?:supported|implemented) "
                           r"(?:on|for) the MPS")
_fallback_said = False


def note_cpu_fallbacks() -> None:
    """torch warns once per operation that MPS lacks and runs on the CPU instead (with
    PYTORCH_ENABLE_MPS_FALLBACK=1, which the package sets on macOS before torch loads): say it
    once, in our words, naming the first such operation; other warnings pass as they are."""
    original = warnings.showwarning
    if getattr(original, "nstvideo_mps", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        global _fallback_said
        found = _MPS_FALLBACK.search(str(message))
        if found is None:
            return original(message, category, filename, lineno, file, line)
        if not _fallback_said:
            _fallback_said = True
            print(f"nstvideo: note: mps lacks {found.group(1)}; it (and any other operation mps "
                  "lacks) runs on the CPU, which is slower", file=sys.stderr)

    show.nstvideo_mps = True
    warnings.showwarning = show


def cpu_has_native_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes what is fast without measurable quality cost on this device."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "tf32"
    if device.type == "mps":
        return "fp32"  # the CPU's bf16 test says nothing about Apple's GPU
    return "bf16" if cpu_has_native_bf16() else "fp32"


def configure_precision(precision: str) -> None:
    """TF32 matmuls/convolutions on GPUs that have them; bf16 is applied by autocast per pass."""
    tf32 = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak device allocation (GPU) and peak resident memory of this process, in MiB."""
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"host_peak_rss_mib": rss_kib / (1 << 20 if sys.platform == "darwin" else 1 << 10)}
    if device.type == "cuda":
        figures["device_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / (1 << 20)
    return figures


def available_memory(device: torch.device) -> int:
    """Bytes free for new allocations on the device (GPU) or in host RAM (CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # memory PyTorch's allocator holds but no tensor uses is free to us too: without it, a
        # second run in one process (sweep, layers) would plan smaller blocks than the first
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    return host_available_memory()


def host_available_memory() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def resident_memory() -> int:
    """Bytes this process holds in RAM now (its resident set)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak: an upper bound
        return rss_kib * (1 if sys.platform == "darwin" else 1024)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS, {platform.machine()})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def workers_pay(device: torch.device) -> bool:
    """Whether host work (flow, saving, encoding) should run on worker threads beside the
    optimization: yes when a GPU optimizes, no on the CPU, whose cores the optimization uses."""
    return device.type != "cpu"
