"""Two (or more) gateway nodes joined by one nats-server, as one process tree for the bench.

    python bench/cluster_nodes.py PORT1 PORT2 ...

Starts the nats-server wsa-fast embeds, then ``wsa-fast serve --nats URL --port PORTi``
for each port; SIGTERM stops them all. The bench samples this process's tree, so the
CPU it reports per message includes every node and NATS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from wsa_fast.embedded_nats import EmbeddedNats

WSA_FAST = os.path.join(os.path.dirname(sys.executable), "wsa-fast")
# Raw speed: the rate limits and max_pending would refuse the floods.
APP = ["--app", "bench.bench_app:app", "--host", "127.0.0.1", "--limits", "off"]


def main(ports: list[str]) -> int:
    nats = EmbeddedNats(1048576)
    nodes = [subprocess.Popen([WSA_FAST, "serve", "--port", port, "--nats", nats.url, *APP]) for port in ports]
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, _: stopping.append(n))
    try:
        while not stopping:
            signal.pause()
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(20)
        nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
