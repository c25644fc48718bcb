"""The runtime: the device, precision, processes and memory a run uses, and the machine it runs on.

One home for what depends on the machine rather than on the model or the protocol: picking
the device (:func:`resolve_device`), the autocast precision (:func:`resolve_amp`), the memory
layout (:func:`use_channels_last`) and ``torch.compile`` (:func:`resolve_compile`); joining a
``torchrun`` process group (:func:`init_distributed`, :func:`dist_info`); measuring peak memory
(:func:`reset_peak_memory`, :func:`peak_memory_mb`); and recording where a figure comes from:
versions, commit, CPU and command (:func:`environment`), and how many CPUs other processes kept
busy meanwhile (:class:`LoadMeter`), so a report can flag a timing taken on a loaded machine.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from lenet2vit.errors import UserError

__all__ = [
    "DeviceError", "resolve_device", "resolve_amp", "amp_name", "autocast", "cpu_has_fast_bf16", "use_channels_last",
    "resolve_compile", "set_deterministic", "dist_info", "init_distributed", "reset_peak_memory", "peak_memory_mb",
    "environment", "git_state", "provenance", "cpu_model", "cpu_capability", "LoadMeter", "LOADED_CPUS",
]

# Other processes keeping more than this many CPUs busy make a timing "loaded".
LOADED_CPUS = 0.25


class DeviceError(UserError, RuntimeError):
    """A device that was asked for is not there; the message says which to use."""


# ----------------------------------------------------------------------------- device & precision


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available; use --device cpu or auto")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None`` means plain fp32)."""
    if amp == "fp32":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def amp_name(dtype: torch.dtype | None) -> str:
    """The ``amp`` name of an autocast dtype from :func:`resolve_amp`: fp32, bf16 or fp16."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(setting: str, model: nn.Module) -> bool:
    """channels_last pays for CNNs (several spatial convs), not for transformers."""
    if setting != "auto":
        return setting == "on"
    spatial = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    return spatial >= 2 and not any("Attention" in type(m).__name__ for m in model.modules())


def resolve_compile(setting: bool | None, device: torch.device) -> bool:
    """Whether to ``torch.compile``: the setting, or for ``None`` CUDA with triton installed."""
    if setting is not None:
        return bool(setting)
    import importlib.util

    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


def set_deterministic(on: bool) -> None:
    """Make every kernel deterministic (``--deterministic``), or leave PyTorch's fast defaults.

    Turns on ``torch.use_deterministic_algorithms`` (an op with no deterministic kernel then
    raises instead of running), cuDNN's deterministic algorithms without benchmarking, and the
    cuBLAS workspace setting that deterministic matrix products need on CUDA. It costs speed on
    GPUs (cuDNN cannot pick its fastest algorithm; scatter-adds serialise); on a CPU, where the
    kernels are deterministic already, it changes nothing measurable.
    """
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


# ----------------------------------------------------------------------------- processes


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) outside ``torchrun``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> torch.device | None:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1); return this rank's device.

    NCCL on GPUs (one GPU per process, by LOCAL_RANK), gloo on CPUs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    base = resolve_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if base.type == "cuda" else "gloo")
    if base.type == "cuda":
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return base


# ----------------------------------------------------------------------------- memory


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement (CUDA allocator, or the process's RSS high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on GPU; peak resident set size (VmHWM) of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return float("nan")


# ----------------------------------------------------------------------------- provenance


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def provenance() -> dict:
    """The command line and the CPU a result comes from (versions and commit: ``environment``)."""
    return {"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
            "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "cpu_capability": cpu_capability()}


def cpu_capability() -> str:
    """The CPU's vector level as PyTorch's kernels use it (``AVX2``, ``AVX512``...), ``+BF16`` where it
    has native bf16 matrix instructions (AVX512-BF16 or AMX): what a CPU timing depends on most."""
    return torch.backends.cpu.get_cpu_capability() + ("+BF16" if cpu_has_fast_bf16() else "")


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """Measures how many CPUs *other* processes kept busy between two readings.

    The machine's busy CPU time (``/proc/stat``) minus this process's own (``os.times``),
    divided by the wall time. 0 on a quiet machine; 1.0 when another job kept one CPU busy.
    ``None`` where the system does not tell (not Linux).
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample():
        busy = _busy_cpu_seconds()
        t = os.times()
        return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()

    def read(self, restart: bool = True) -> float | None:
        """Other processes' busy CPUs since the last reading (or since creation)."""
        now = self._sample()
        (b0, own0, t0), (b1, own1, t1) = self._start, now
        if restart:
            self._start = now
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return round(max((b1 - b0) - (own1 - own0), 0.0) / (t1 - t0), 3)


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """The commit (and whether the tree had local changes) of the code this process runs.

    Read once, at the first call, near the process's start: a later ``git checkout`` does not
    change what a long study reports for the code it had already imported.
    """
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=here).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=5, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(status.stdout.strip()) if commit else None}


def environment(device: torch.device | None = None) -> dict:
    """Library versions, device and git commit, stored with every result."""
    import torchvision

    import lenet2vit

    env = {
        **provenance(),
        "lenet2vit": lenet2vit.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device is not None:
        env["device"] = str(device)
        if device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
    env.update(git_state())
    return env
