"""What every benchmark case shares: round-robin timing with the machine's other load recorded,
peak-memory probes, and the result records `scripts/bench.py` prints and saves.

A case module exposes `CASES: dict[str, CaseFn]`; a case builds its data (untimed), times its
candidates with `round_robin` — the bare library call and clusterd's path on the same data,
alternating, so a noisy neighbour hits both alike — and returns a `CaseResult` whose `targets`
say whether each issue-6 target was met. Ratios measured side by side are the trustworthy part;
absolute seconds move with the machine's other tenants.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Options:
    quick: bool = False  # small sizes: seconds per case, for a smoke run and the test suite
    repeats: int = 3
    seed: int = 0


@dataclass
class Stats:
    """One candidate's timings from a round-robin run."""

    name: str
    runs: list[float]
    foreign_cores: list[float]  # CPU other processes used during each run, in cores
    cores_used: list[float]  # this process's CPU seconds / wall seconds, per run
    info: dict[str, Any] = field(default_factory=dict)  # the last run's returned facts (inertia, ari, ...)

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    @property
    def min(self) -> float:
        return float(min(self.runs))

    @property
    def cpu_seconds(self) -> float:
        """Median CPU seconds per run of this process: steadier than wall time on a shared machine."""
        return float(statistics.median(w * c for w, c in zip(self.runs, self.cores_used, strict=True)))

    @property
    def foreign(self) -> float:
        return float(statistics.median(self.foreign_cores)) if self.foreign_cores else 0.0


@dataclass
class Target:
    name: str  # e.g. "k-means 100k×768: ≥ 3× faster than scikit-learn"
    met: bool
    detail: str  # the measured figures behind the verdict


@dataclass
class CaseResult:
    case: str
    title: str
    rows: list[Stats] = field(default_factory=list)
    baseline: str | None = None  # the row the "×" column divides by
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)  # free-form rows (growth tables, memory)

    def ratio(self, name: str, to: str | None = None) -> float:
        """median(to) / median(name): > 1 means `name` is faster."""
        by = {r.name: r for r in self.rows}
        return by[to or self.baseline or name].median / by[name].median

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for row, stats in zip(out["rows"], self.rows, strict=True):
            row.update(median=stats.median, min=stats.min, foreign=stats.foreign)
        return out


CaseFn = Callable[[Options], CaseResult]


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """Run `fn` once: (wall s, foreign cores, own cores, fn's result)."""
    gc.collect()
    b0, o0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    busy, own = _busy_seconds() - b0, _own_seconds() - o0
    return wall, max(0.0, (busy - own) / wall), own / wall, out


def round_robin(
    candidates: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    before: Callable[[], None] | None = None,
) -> list[Stats]:
    """Time each candidate `repeats` times, alternating A B C A B C ... (`before` runs untimed
    ahead of every call). A candidate may return a dict of facts (inertia, ARI, ...), kept in
    `Stats.info` from its last run."""
    stats = {name: Stats(name, [], [], []) for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if before is not None:
                before()
            wall, foreign, own, out = timed(fn)
            s = stats[name]
            s.runs.append(wall)
            s.foreign_cores.append(foreign)
            s.cores_used.append(own)
            if isinstance(out, dict):
                s.info = out
    return list(stats.values())


def machine_load(seconds: float = 1.0) -> float:
    """Cores other processes keep busy right now (sampled over `seconds`)."""
    b0, o0 = _busy_seconds(), _own_seconds()
    time.sleep(seconds)
    return max(0.0, (_busy_seconds() - b0 - (_own_seconds() - o0)) / seconds)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _trim() -> None:
    """Hand freed heap pages back to the kernel, so RSS (the baseline) is what is really in use."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warm_memory(mb: float) -> None:
    """Touch `mb` of fresh memory and free it, so what runs next allocates pages the machine has
    just used. On this VM the host reclaims freed guest memory within ~2 s, and touching it again
    then costs ~3 ms per MB (a 293 MB matrix: 0.04 s warm, 0.4–0.9 s cold); without this, whichever
    candidate runs after an idle gap or a malloc_trim pays that and the other does not."""
    import numpy as np

    block = np.empty(int(mb * 2**20), dtype=np.uint8)
    block.fill(1)
    del block


def reset_peak_rss(warm_mb: float = 0) -> int:
    """Start a peak-memory measurement: collect, trim, `warm_memory(warm_mb)`, reset the kernel's
    high-water mark (/proc/self/clear_refs, so earlier peaks don't count). Returns the RSS base (kB)."""
    gc.collect()
    _trim()
    if warm_mb:
        warm_memory(warm_mb)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def peak_rss_since(base_kb: int) -> float:
    """MB the peak resident memory rose above `base_kb` (reset_peak_rss) since then."""
    return (_status_kb("VmHWM") - base_kb) / 1024


def peak_rss_delta_mb(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak resident memory `fn` added on top of what the process held when it started, in MB."""
    base = reset_peak_rss()
    out = fn()
    return peak_rss_since(base), out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "load_before": round(machine_load(1.0), 2),
    }


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out
