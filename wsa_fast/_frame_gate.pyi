import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any

REASONS: dict[int, str]

# engine/close_codes.pxi, included here as in _gateway (wsa_fast._gateway.CloseCode is the one to import).
class CloseCode(enum.IntEnum):
    CLOSE_GOING_AWAY = ...
    CLOSE_PROTOCOL_ERROR = ...
    CLOSE_INVALID_TEXT = ...
    CLOSE_POLICY = ...
    CLOSE_TOO_BIG = ...
    CLOSE_INTERNAL_ERROR = ...
    CLOSE_TRY_AGAIN_LATER = ...
    CLOSE_REPLACED = ...

def create_protocol(
    listener_factory: Callable[[Any], Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    max_message_size: int,
    read_buffer_init_size: int,
    handshake_timeout: float,
    close_timeout: float,
    message_timeout: float = ...,
    sweeper: Sweeper | None = ...,
) -> FrameGate: ...

class Sweeper:
    def __init__(self, interval: float, timeout: float, loop: asyncio.AbstractEventLoop) -> None: ...
    def sweep(self) -> None: ...
    def close(self) -> None: ...

class FrameGate(asyncio.BufferedProtocol):
    def __init__(
        self,
        protocol: Any,
        max_message_size: int,
        close_timeout: float,
        message_timeout: float,
        loop: asyncio.AbstractEventLoop,
        sweeper: Sweeper | None = ...,
    ) -> None: ...
    @property
    def address(self) -> Any: ...
