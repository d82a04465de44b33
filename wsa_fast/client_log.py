"""Log lines caused by clients: at most INFO, one line each, and at most a few a second per worker.

A client must not be able to fill the log, so what it does wrong or too much (protocol
errors, refusals, being cut off) is logged through the ``wsa_fast.clients`` logger, and
picows's own ERROR lines about a client's bad frames are turned into INFO lines of it.
"""

from __future__ import annotations

import logging
from time import monotonic

__all__ = ["CLIENT_LOGGER", "ClientLogFilter", "install", "refused"]

CLIENT_LOGGER = "wsa_fast.clients"
PICOWS_LOGGER = "picows.wsa_fast.picows"
# picows's lines that report a client's bad frames (it logs them at ERROR).
PICOWS_CLIENT_ERRORS = ("WS parser error", "on_ws_frame raised WSProtocolError")
# Lines a second once the burst is spent, and the burst.
LINES_PER_SECOND = 5.0
BURST = 20.0


class ClientLogFilter(logging.Filter):
    """A handler filter: lets client lines through a token bucket, counting the ones it drops."""

    def __init__(self, per_second: float = LINES_PER_SECOND, burst: float = BURST) -> None:
        super().__init__()
        self.per_second = per_second
        self.burst = burst
        self.tokens = burst
        self.last = monotonic()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "wsa_client_verdict", None)
        if verdict is None:
            verdict = self._decide(record)
            # Every handler sees the same record: decide once.
            record.wsa_client_verdict = verdict
        return verdict

    def _decide(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith(PICOWS_LOGGER)
            and isinstance(record.msg, str)
            and record.msg.startswith(PICOWS_CLIENT_ERRORS)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            if not logging.getLogger(CLIENT_LOGGER).isEnabledFor(logging.INFO):
                return False
        elif record.name != CLIENT_LOGGER:
            return True
        now = monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens < 1:
            self.suppressed += 1
            return False
        self.tokens -= 1
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} similar lines suppressed)"
            self.suppressed = 0
        return True


_log = logging.getLogger(CLIENT_LOGGER)


def refused(message: str, *args: object) -> None:
    """One INFO line about a client refused or closed for what it did."""
    _log.info(message, *args)


def install() -> ClientLogFilter:
    """Put one shared filter on every handler of the root logger (where all lines end up)."""
    log_filter = ClientLogFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
    return log_filter
