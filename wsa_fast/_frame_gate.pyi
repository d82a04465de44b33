import asyncio
import logging
from collections.abc import Callable
from typing import Any

REASONS: dict[int, str]

def create_protocol(
    listener_factory: Callable[[Any], Any],
    logger: logging.Logger,
    max_message_size: int,
    read_buffer_init_size: int,
    handshake_timeout: float,
    close_timeout: float,
    ping_interval: float = ...,
    ping_timeout: float = ...,
    message_timeout: float = ...,
) -> FrameGate: ...

class FrameGate(asyncio.BufferedProtocol):
    def __init__(
        self,
        protocol: Any,
        max_message_size: int,
        close_timeout: float,
        message_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None: ...
    @property
    def peer(self) -> Any: ...
