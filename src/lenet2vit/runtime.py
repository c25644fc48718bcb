"""The machine a figure is measured on: what it is, and how busy the rest of it was.

Every result records the CPU, the command and the commit (:func:`provenance`), and every
training epoch how many CPUs other processes kept busy meanwhile (:class:`LoadMeter`), so a
report can flag a timing taken on a loaded machine.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

__all__ = ["LoadMeter", "cpu_model", "provenance", "LOADED_CPUS"]

# Other processes keeping more than this many CPUs busy make a timing "loaded".
LOADED_CPUS = 0.25


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
            "cpu": cpu_model(), "logical_cpus": os.cpu_count()}


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
