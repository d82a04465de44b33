from typing import Any

from picows import WSListener, WSTransport

HDR_LOWEST_NS: int
HDR_HIGHEST_NS: int
HDR_DIGITS: int
CHECK_ID_ONLY: int
CHECK_KEY_VALUE: int

def monotonic() -> float: ...
def client_frame(payload: bytes, mask: bytes) -> bytes: ...
def value_at_index(index: int) -> int: ...

class Histogram:
    total: int
    max_ns: int
    def record_ns(self, ns: int) -> None: ...
    def sparse(self) -> list[tuple[int, int]]: ...
    def reset(self) -> None: ...

class Stats:
    sent: int
    delivered: int
    failed: int
    duplicated: int
    unknown: int
    bad: int
    lost_overwritten: int
    budget: int
    skipped: int
    disconnects: int
    closed: int
    fails: dict[str, int]
    bad_samples: list[str]
    latency: Histogram
    interval: Histogram
    recording: bool
    def sample_bad(self, text: str) -> None: ...

class Sender:
    fanout: int
    credits: int
    outstanding: int
    active: bool
    def __init__(
        self, stats: Stats, frame: bytes, id_pos: int, id_mask: bytes, ring_size: int, fanout: int
    ) -> None: ...
    def start(self, window: int) -> None: ...
    def stop(self) -> None: ...
    def leftover(self) -> int: ...
    def attach(self, transport: WSTransport) -> None: ...

class Conn(WSListener):
    transport: WSTransport
    sender: Sender | None
    own: Sender | None
    compact: bool
    bench: bool
    pump_sender: bool
    inbox: list[bytes]
    waiter: Any
    closed: Any
    def __init__(self, stats: Stats, compact: bool, check: int, ok_key: bytes, ok_val: bytes) -> None: ...
    def receive_from(self, sender: Sender) -> None: ...
    async def next_payload(self, timeout: float) -> bytes: ...

class Pacer:
    running: bool
    def __init__(
        self, senders: list[Sender], rate: float, stats: Stats, limit_outstanding: int, spin: bool = False
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def tick(self) -> None: ...
