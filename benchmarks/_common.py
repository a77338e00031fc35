"""Helpers the benchmark scripts share (imported as a sibling module: `python benchmarks/x.py`)."""

from __future__ import annotations

import os
import time


class CpuMeter:
    """CPU used by *other* processes while a case runs (Linux /proc/stat; else None).

    All CPU time the kernel counts as busy (and stolen by the hypervisor), minus this process's and
    its waited-for children's own CPU time, over the wall time: a noise gauge for the figures."""

    def __init__(self):
        self.start = self._snap()

    @staticmethod
    def _snap():
        import resource
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return busy, own, time.perf_counter()

    def delta(self) -> tuple[float, float, float] | None:
        """(all busy CPU s, own CPU s, wall s) since construction."""
        end = self._snap()
        if self.start is None or end is None:
            return None
        return tuple(e - s for e, s in zip(end, self.start))

    def others_cores(self) -> float | None:
        """Cores kept busy by other processes since construction."""
        d = self.delta()
        if d is None or d[2] <= 0:
            return None
        return max((d[0] - d[1]) / d[2], 0.0)
