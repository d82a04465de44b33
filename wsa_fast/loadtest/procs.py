"""Running the load in one process, or in ``--procs N`` processes whose results merge exactly.

Each of N processes is ``python -m wsa_fast bench ... --part I/N --tag T``: it connects and
logs in its share of the clients, says ``ready`` on stdout, starts the load when the parent
writes ``go`` (so all start together), then writes one JSON line per tick and its result.
The parent merges ticks into the progress line and results into one (results.merge).
"""

from __future__ import annotations

import json
import queue
import random
import signal
import subprocess
import sys
import threading

import uvloop

from . import results
from .driver import Driver, SetupError
from .report import Progress


def run_all(args) -> dict:
    tag = "%04x" % random.randrange(0x10000)
    progress = Progress(args.clients, enabled=not args.quiet)
    try:
        if args.procs == 1:
            return uvloop.run(Driver(args, 0, 1, tag).run(progress.tick))
        return run_children(args, tag, progress)
    finally:
        progress.done()


def run_children(args, tag: str, progress: Progress) -> dict:
    n = args.procs
    argv = list(args.argv)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "wsa_fast", "bench", *argv, "--part", f"{i}/{n}", "--tag", tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for i in range(n)
    ]
    lines: queue.Queue = queue.Queue()

    def read(i, child):
        for line in child.stdout:
            lines.put((i, json.loads(line)))
        lines.put((i, {"event": "exit", "code": child.wait()}))

    for i, child in enumerate(children):
        threading.Thread(target=read, args=(i, child), daemon=True).start()
    # Ctrl-C reaches the children too (one process group): they stop early and report, and this merges.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        ready, found, alive = set(), {}, set(range(n))
        ticks: dict[int, dict] = {}
        while alive:
            i, msg = lines.get()
            event = msg.get("event")
            if event == "ready":
                ready.add(i)
                if len(ready) == n:
                    for child in children:
                        assert child.stdin is not None  # started with stdin=PIPE
                        child.stdin.write("go\n")
                        child.stdin.flush()
            elif event == "tick":
                ticks.setdefault(msg["n"], {})[i] = msg["tick"]
                if len(ticks[msg["n"]]) == n:
                    progress.tick(results.merge_timelines([[t] for t in ticks.pop(msg["n"]).values()])[0])
            elif event == "result":
                found[i] = msg["result"]
            elif event == "exit":
                alive.discard(i)
                if i not in found:
                    raise SetupError(f"load process {i + 1} of {n} failed (exit {msg['code']}); see its message above")
        parts = [found[i] for i in range(n)]
        merged = results.merge(parts)
        merged["part_results"] = parts  # each process's own result, as its --json would be
        return merged
    finally:
        signal.signal(signal.SIGINT, previous)
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()


def run_part(args) -> int:
    """One of the --procs processes: the line protocol of the module docstring on stdout."""
    index, _, count = args.part.partition("/")
    out = sys.stdout

    def say(event: dict) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    ticks = 0

    def on_tick(tick):
        nonlocal ticks
        say({"event": "tick", "n": ticks, "tick": tick})
        ticks += 1

    async def barrier():
        import asyncio

        say({"event": "ready"})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SetupError("the parent process went away before the load started")

    try:
        result = uvloop.run(Driver(args, int(index), int(count), args.tag).run(on_tick, barrier))
    except (SetupError, ValueError) as error:  # ValueError: credentials or params this run cannot use
        print(f"wsa-fast bench: {error}", file=sys.stderr)
        return 1
    say({"event": "result", "result": result})
    return 0
