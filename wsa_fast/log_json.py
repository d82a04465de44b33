"""``--log-format json``: one JSON object per line, with keys that stay the same from line to line.

Every line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``pid`` and
``message``; a line logged with an exception adds ``exception`` (its traceback as one string).
"""

from __future__ import annotations

import logging
import time

import orjson

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()
