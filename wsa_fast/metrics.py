"""The node's metrics in the Prometheus text format (``GET /metrics``).

Each worker counts in its own row of int64 slots (``_gateway.Metric``), incremented by the
compiled gateway as plain C integers. The rows live in one shared anonymous mapping made
before the workers are forked, so whichever worker answers a scrape sums every row and
reports the whole node. A restarted worker keeps its row's counters, so totals never go back.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Any

from ._gateway import FAIL_CODES, FIXED_SLOTS, HANDLER_BUCKETS, METHOD_SLOTS, Metric, handler_methods, metric_slots

__all__ = ["MetricsBlock", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SLOT_BYTES = 8
PREFIX = "wsa_"

# name, type, help, [(labels, slot)]: one family per entry, rendered in this order.
FAMILIES: list[tuple[str, str, str, list[tuple[str, int]]]] = [
    (
        "connections",
        "gauge",
        "Open WebSocket connections, by form.",
        [('form="verbose"', Metric.CONNECTIONS_VERBOSE), ('form="compact"', Metric.CONNECTIONS_COMPACT)],
    ),
    (
        "connections_accepted_total",
        "counter",
        "WebSocket connections accepted, by form.",
        [('form="verbose"', Metric.ACCEPTED_VERBOSE), ('form="compact"', Metric.ACCEPTED_COMPACT)],
    ),
    (
        "upgrades_refused_total",
        "counter",
        "WebSocket upgrades refused, by reason (HTTP 503, 429, 403).",
        [
            ('reason="max_connections"', Metric.REFUSED_MAX_CONNECTIONS),
            ('reason="max_connections_per_ip"', Metric.REFUSED_MAX_CONNECTIONS_PER_IP),
            ('reason="origin"', Metric.REFUSED_ORIGIN),
        ],
    ),
    (
        "logins_total",
        "counter",
        "Logins (auth@v1/login or a handshake token), by result.",
        [('result="success"', Metric.LOGINS_SUCCESS), ('result="fail"', Metric.LOGINS_FAIL)],
    ),
    (
        "messages_in_total",
        "counter",
        "Messages received from clients, by type (invalid: unreadable).",
        [
            ('type="request"', Metric.IN_REQUEST),
            ('type="response"', Metric.IN_RESPONSE),
            ('type="event"', Metric.IN_EVENT),
            ('type="invalid"', Metric.IN_INVALID),
        ],
    ),
    (
        "messages_out_total",
        "counter",
        "Messages written to clients, by type.",
        [
            ('type="request"', Metric.OUT_REQUEST),
            ('type="response"', Metric.OUT_RESPONSE),
            ('type="event"', Metric.OUT_EVENT),
        ],
    ),
    (
        "fails_total",
        "counter",
        "Fail responses sent, by code.",
        [(f'code="{code.decode()}"', Metric.FAILS + i) for i, code in enumerate(FAIL_CODES)]
        + [('code="other"', Metric.FAILS + len(FAIL_CODES))],
    ),
    (
        "relays_total",
        "counter",
        "Requests and events relayed to a client, on this worker or another.",
        [('where="local"', Metric.RELAYS_LOCAL), ('where="remote"', Metric.RELAYS_REMOTE)],
    ),
    (
        "broadcasts_total",
        "counter",
        "Broadcasts sent, by who sent them.",
        [('origin="client"', Metric.BROADCASTS_CLIENT), ('origin="server"', Metric.BROADCASTS_SERVER)],
    ),
    ("broadcast_deliveries_total", "counter", "Broadcast copies written to clients.", [("", Metric.DELIVERIES)]),
    ("rate_limited_total", "counter", "Messages refused with RATE_LIMITED.", [("", Metric.RATE_LIMITED)]),
    (
        "slow_consumers_closed_total",
        "counter",
        "Connections closed for not reading their output.",
        [("", Metric.SLOW_CONSUMERS_CLOSED)],
    ),
    (
        "dropped_responses_total",
        "counter",
        "Responses nobody waited for any more (late or unknown).",
        [("", Metric.DROPPED_RESPONSES)],
    ),
    (
        "pending_requests",
        "gauge",
        "Requests awaiting a response: relayed by clients and sent by the server.",
        [("", Metric.PENDING_REQUESTS)],
    ),
    ("nats_connected", "gauge", "Workers connected to NATS.", [("", Metric.NATS_CONNECTED)]),
    (
        "nats_reconnects_total",
        "counter",
        "Reconnections to NATS after a lost connection.",
        [("", Metric.NATS_RECONNECTS)],
    ),
]


class MetricsBlock:
    """Every worker's slots, one row each, in memory shared across fork()."""

    def __init__(self, workers: int, app: Any) -> None:
        self.methods = handler_methods(app)
        self.row = metric_slots(self.methods)
        self.workers = workers
        self.memory = mmap.mmap(-1, workers * self.row * SLOT_BYTES)  # MAP_SHARED | MAP_ANONYMOUS
        self.slots = memoryview(self.memory).cast("q")

    def worker(self, index: int) -> memoryview:
        """The row of worker ``index`` (0-based), for its Gateway to count into."""
        return self.slots[index * self.row : (index + 1) * self.row]

    def totals(self) -> list[int]:
        """Each slot summed over the workers."""
        sums = [0] * self.row
        for w in range(self.workers):
            row = self.worker(w)
            for i in range(self.row):
                sums[i] += row[i]
        return sums

    def render(self) -> bytes:
        return "".join(self._lines(self.totals())).encode()

    def _lines(self, sums: list[int]) -> Iterator[str]:
        for name, kind, text, series in FAMILIES:
            yield f"# HELP {PREFIX}{name} {text}\n# TYPE {PREFIX}{name} {kind}\n"
            for labels, slot in series:
                yield f"{PREFIX}{name}{{{labels}}} {sums[slot]}\n" if labels else f"{PREFIX}{name} {sums[slot]}\n"
        name = PREFIX + "handler_duration_seconds"
        yield f"# HELP {name} Time an app handler took to answer, by method.\n# TYPE {name} histogram\n"
        for i, method in enumerate(self.methods):
            base = FIXED_SLOTS + i * METHOD_SLOTS
            label = 'method="%s"' % method.replace("\\", "\\\\").replace('"', '\\"')
            cumulative = 0
            for bound, count in zip((*HANDLER_BUCKETS, "+Inf"), sums[base : base + len(HANDLER_BUCKETS) + 1]):
                cumulative += count
                yield f'{name}_bucket{{{label},le="{bound}"}} {cumulative}\n'
            yield f"{name}_sum{{{label}}} {sums[base + len(HANDLER_BUCKETS) + 1] / 1e9}\n"
            yield f"{name}_count{{{label}}} {cumulative}\n"
