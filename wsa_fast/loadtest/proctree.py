"""CPU time and memory of a process tree, and of the machine, from psutil.

A server may fork workers, so its CPU is the sum over every live descendant of the root,
each with its own user+system time and that of the children it has already reaped.
Everything else that ran meanwhile is noise from the shared machine; we measure it the
same way so a run can say how quiet the box was.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil

# pid -> (ppid, cpu seconds including reaped children, name, own cpu seconds)
Scan = dict[int, tuple[int, float, str, float]]


def scan() -> Scan:
    out: Scan = {}
    for proc in psutil.process_iter(["ppid", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:  # not ours to read
            continue
        own = times.user + times.system
        out[proc.pid] = (proc.info["ppid"], own + times.children_user + times.children_system, proc.info["name"], own)
    return out


def tree(s: Scan, root: int) -> set[int]:
    """root and every live process below it."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in s.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in s:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def cpu_of(s: Scan, pids: Iterable[int]) -> float:
    return sum(s[p][1] for p in pids if p in s)


def delta_except(before: Scan, after: Scan, exclude: set[int]) -> dict[str, float]:
    """CPU each program not in `exclude` used itself between two scans, by name (new ones from zero).

    Reaped children are left out: their whole life lands in the parent at once.
    """
    by_name: dict[str, float] = {}
    for pid, (_, _, comm, own) in after.items():
        if pid not in exclude:
            d = own - (before[pid][3] if pid in before else 0.0)
            if d > 0:
                by_name[comm] = by_name.get(comm, 0.0) + d
    return by_name


def rss_bytes(root: int) -> int:
    """Resident memory of root's tree, summed over the live processes: a forking server counts whole."""
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass  # exited since the listing
    return total


def steal_seconds(core: int) -> float:
    """Time the hypervisor ran something else while this virtual CPU wanted to run."""
    per_cpu = psutil.cpu_times(percpu=True)
    return getattr(per_cpu[core], "steal", 0.0) if core < len(per_cpu) else 0.0


def idle_seconds() -> tuple[int, float]:
    """(CPUs, seconds all CPUs spent idle, waiting on I/O or stolen) since boot.

    With a tickless kernel idle time is measured exactly, unlike the tick-sampled busy
    columns, so busy time over a window is CPUs x wall time minus the change in this.
    """
    per_cpu = psutil.cpu_times(percpu=True)
    idle = sum(t.idle + getattr(t, "iowait", 0.0) + getattr(t, "steal", 0.0) for t in per_cpu)
    return len(per_cpu), idle
