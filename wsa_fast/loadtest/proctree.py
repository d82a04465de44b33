"""CPU time and memory of processes, read from /proc/PID/stat and /proc/PID/status.

A server may fork workers, so its CPU is the sum over every live descendant of the root,
each with its own utime+stime and the cutime+cstime of children it has already reaped.
Everything else that ran meanwhile is noise from the shared machine; we measure it the
same way so a run can say how quiet the box was.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")

# pid -> (ppid, cpu seconds including reaped children, name, own cpu seconds)
Scan = dict[int, tuple[int, float, str, float]]


def _stat(pid: int) -> tuple[str, list[str]] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    close = raw.rindex(")")
    return raw[raw.index("(") + 1 : close], raw[close + 2 :].split()


def scan() -> Scan:
    out: Scan = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None:
            continue
        comm, fields = st
        # After dropping pid and comm: [1] is ppid, [11:15] utime stime cutime cstime.
        own = int(fields[11]) + int(fields[12])
        out[int(name)] = (int(fields[1]), (own + int(fields[13]) + int(fields[14])) / _TICK, comm, own / _TICK)
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


def cpu_of(s: Scan, pids) -> float:
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


def tree_cpu_seconds(root: int) -> float:
    """user+sys seconds of root's tree, reaped children included."""
    s = scan()
    return cpu_of(s, tree(s, root))


def rss_bytes(root: int) -> int:
    """Resident memory of root's tree (VmRSS summed over the live processes): a forking server counts whole."""
    s = scan()
    total = 0
    for pid in tree(s, root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024  # the kernel reports kB
                        break
        except OSError:
            pass  # exited since the scan
    return total


def steal_seconds(core: int) -> float:
    """Time the hypervisor ran something else while this virtual CPU wanted to run."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                return int(line.split()[8]) / _TICK
    return 0.0


def idle_seconds() -> tuple[int, float]:
    """(CPUs, seconds all CPUs spent idle, waiting on I/O or stolen) since boot.

    With a tickless kernel idle time is measured exactly, unlike the tick-sampled busy
    columns, so busy time over a window is CPUs x wall time minus the change in this.
    """
    n, idle = 0, 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = line.split()
                n += 1
                idle += int(v[4]) + int(v[5]) + int(v[8])
    return n, idle / _TICK
