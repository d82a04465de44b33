"""wsa-fast: a Cython-accelerated gateway for the WSA WebSocket protocol."""

from .app import App, Context
from .errors import WSAError
from .message import COMPACT, VERBOSE, Message

__all__ = ["App", "Context", "WSAError", "Message", "VERBOSE", "COMPACT", "__version__"]

__version__ = "0.1.0"
