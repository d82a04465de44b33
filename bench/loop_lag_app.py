"""The fairness scenario's app: no handlers, and a probe of the gateway's own event loop.

bench/run.py serves it to the fairness scenario (`--app bench.loop_lag_app:app`) with
``WSA_BENCH_LOOP_LAG=FILE``: from the first login on, a task sleeps 1 ms at a time and appends
to FILE how late it woke and how much CPU the gateway's thread used meanwhile
(``perf_counter() lag_seconds cpu_seconds`` per line; perf_counter is the clock bench/fairness.py
reads, so it can cut the lines by phase). A late wake is time in which no client was read: the
gateway's stalls, told apart from the measuring process's (bench/fairness.py ``loop_lag``). The CPU
used tells the gateway's own work (a long turn) from time the kernel gave to other programs, which
on a shared machine is most of the lag. The probe wakes 1,000 times a second (about 1% of a
core); without the variable it never starts. ``{pid}`` in FILE is the worker's pid (one file per
worker). It also appends each garbage collection to FILE.gc (``perf_counter() generation
wall_seconds cpu_seconds collected`` per line): a collection is a stall the lag alone does not name.
"""

import asyncio
import gc
import os
import time

from wsa_fast import App

PROBE = 0.001
# Lines written at a time: the file is read while the gateway still runs, so it trails by at most this many.
BATCH = 100

app = App()
probing: list[asyncio.Task] = []


def log_collections(path: str) -> None:
    out = open(path, "w", buffering=1)  # noqa: SIM115 (open for the worker's life)
    started: list[float] = [0.0, 0.0]

    def on_collection(phase: str, info: dict) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
        else:
            wall, cpu = time.perf_counter() - started[0], time.thread_time() - started[1]
            out.write(f"{started[0]:.6f} {info['generation']} {wall:.6f} {cpu:.6f} {info['collected']}\n")

    gc.callbacks.append(on_collection)


async def probe(path: str) -> None:
    with open(path, "w") as out:
        lines = []
        while True:
            slept_at, cpu_at = time.perf_counter(), time.thread_time()
            await asyncio.sleep(PROBE)
            late, cpu = time.perf_counter() - slept_at - PROBE, time.thread_time() - cpu_at
            lines.append(f"{slept_at:.6f} {late:.6f} {cpu:.6f}\n")
            if len(lines) >= BATCH:
                out.write("".join(lines))
                out.flush()
                lines.clear()


@app.on_join
def start_probe(client_id: str) -> None:
    path = os.environ.get("WSA_BENCH_LOOP_LAG")
    if path and not probing:
        path = path.replace("{pid}", str(os.getpid()))
        log_collections(path + ".gc")
        probing.append(asyncio.get_running_loop().create_task(probe(path)))
