"""What a process between two workers costs per message, without the gateway: nats-server against the least a
forwarder can do, driven by a minimal client with the relay bench's batches.

    python bench/nats_floor.py                     # about 1 min: a table
    python bench/nats_floor.py --batches 440 --rounds 4 --record-bytes 88,64

A publisher connection writes one ``PUB`` of BATCH records (RECORD bytes each, the size of one relayed
message's record and its header in bench/run_cluster.py's relay) per write, paced by spinning so that RATE
records a second flow; a subscriber connection reads them. Both are this Python process; what is measured is
the CPU of the process between them: nats-server (as wsa-fast embeds it: GOMAXPROCS=1) and
bench/native/loopback_forwarder.c (accept, epoll, read, write: no protocol), compiled here with ``cc``. CPU
comes from /proc/PID/task/*/schedstat (nanoseconds, every thread). ``--vary`` draws each batch's size
uniformly from BATCH/4 to 7*BATCH/4, as the gateway's batches vary.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from wsa_fast.embedded_nats import nats_server_binary  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def connect(port: int, nats: bool) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if nats:
        s.recv(65536)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        seen = b""
        while b"PONG" not in seen:
            seen += s.recv(65536)
    return s


def drive(port: int, pid: int, nats: bool, writes: list[tuple[bytes, int]], rate: float, seconds: float) -> tuple:
    """Publish ``writes`` (bytes, records) in a loop at ``rate`` records/s: the CPU ``pid`` spent per write and
    per record, and the writes per second."""
    subscriber = connect(port, nats)
    if nats:
        subscriber.sendall(b"SUB w.x 1\r\nPING\r\n")
        seen = b""
        while b"PONG" not in seen:
            seen += subscriber.recv(65536)
    else:
        time.sleep(0.1)  # the forwarder takes its subscriber first
    publisher = connect(port, nats)

    def read() -> None:
        try:
            while subscriber.recv(1 << 20):
                pass
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for data, _ in writes[:20]:  # warm up
        publisher.sendall(data)
    time.sleep(0.2)
    n = records = 0
    start, cpu0 = time.perf_counter(), cpu_ns(pid)
    due = start
    while (now := time.perf_counter()) - start < seconds:
        if now >= due:
            data, k = writes[n % len(writes)]
            publisher.sendall(data)
            n += 1
            records += k
            due += k / rate
    time.sleep(0.2)  # the last writes through
    spent = (cpu_ns(pid) - cpu0) / 1000
    elapsed = time.perf_counter() - start
    publisher.close()
    subscriber.close()
    return spent / n, spent / records, n / elapsed


def batches(record: int, batch: int, vary: bool, nats: bool) -> list[tuple[bytes, int]]:
    draw = random.Random(1)
    out = []
    for _ in range(256):
        k = draw.randint(max(1, batch // 4), batch * 7 // 4) if vary else batch
        payload = b"r" * (record * k)
        out.append((b"PUB w.x w.reply %d\r\n%s\r\n" % (len(payload), payload) if nats else payload, k))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record-bytes", default="88", help="bytes per record, comma-separated (default 88)")
    p.add_argument("--rate", type=float, default=800_000, help="records per second (default 800,000)")
    p.add_argument("--batches", default="440,100,1000,4000", help="records per PUB, comma-separated")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--vary", action="store_true", help="batch sizes drawn from BATCH/4 to 7*BATCH/4")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="wsa-nats-floor-")
    forwarder = os.path.join(tmp, "loopback_forwarder")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        subprocess.run([cc, "-O2", "-o", forwarder, os.path.join(HERE, "native", "loopback_forwarder.c")], check=True)
    else:
        print("no C compiler: the forwarder's rows are left out", file=sys.stderr)
    config = os.path.join(tmp, "nats.conf")
    results: dict[tuple, list[tuple]] = {}
    try:
        for _ in range(args.rounds):
            for record in map(int, args.record_bytes.split(",")):
                for batch in map(int, args.batches.split(",")):
                    for name in ("nats-server", "forwarder") if cc else ("nats-server",):
                        port = free_port()
                        if name == "nats-server":
                            with open(config, "w") as f:
                                f.write(f"listen: 127.0.0.1:{port}\nmax_payload: {4 * 1024 * 1024}\n")
                            command = [nats_server_binary(), "-c", config]
                        else:
                            command = [forwarder, str(port)]
                        proc = subprocess.Popen(command, env=dict(os.environ, GOMAXPROCS="1"),
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                        try:
                            writes = batches(record, batch, args.vary, name == "nats-server")
                            row = drive(port, proc.pid, name == "nats-server", writes, args.rate, args.seconds)
                        finally:
                            proc.terminate()
                            proc.wait(10)
                        results.setdefault((name, record, batch), []).append(row)
                        print(f"{name:11s} {record:4d} B x {batch:5d}: {row[0]:7.1f} µs/write {row[1]:.4f} µs/record "
                              f"({row[2]:,.0f} writes/s)", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\n{args.rate:,.0f} records/s, {'varying ' if args.vary else ''}batches; median of {args.rounds} rounds; "
          f"load average {load:.1f}")  # fmt: skip
    print("| process between the workers | record bytes | records per write | µs CPU per write | µs CPU per record |")
    print("|---|---:|---:|---:|---:|")
    for (name, record, batch), rows in results.items():
        per_write = statistics.median(r[0] for r in rows)
        per_record = statistics.median(r[1] for r in rows)
        print(f"| {name} | {record} | {batch} | {per_write:.1f} | {per_record:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
