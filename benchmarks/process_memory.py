"""Peak memory of a process tree, sampled: the largest process and the total over the tree (Dask workers included).

    with TreeMemory(pid) as memory:   # default: this process and every process it starts (LocalCluster workers)
        ...
    memory.largest, memory.total      # peak bytes (RSS) of one process, and of the sum over the tree at one moment

RSS sampled every ``interval`` seconds with psutil (a peak shorter than that may be missed); shared pages count in
every process that maps them, so ``total`` is an upper bound on the tree's footprint.
"""
from __future__ import annotations

import os
import threading

import psutil

__all__ = ["TreeMemory"]


class TreeMemory:
    def __init__(self, pid: int | None = None, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.largest = self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def sample(self) -> tuple[int, int]:
        """(largest RSS, summed RSS) over the tree now."""
        sizes = []
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                sizes.append(process.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return max(sizes, default=0), sum(sizes)

    def _run(self) -> None:
        while not self._stop.is_set():
            largest, total = self.sample()
            self.largest, self.total = max(self.largest, largest), max(self.total, total)
            self._stop.wait(self.interval)

    def __enter__(self):  # -> the sampler itself
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
