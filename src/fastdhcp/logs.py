"""``--log-level`` and ``--log-format``: plain text for people, one JSON object
per line for log shippers. Lease events (events.py) add their fields."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the date and time formatted once a second, not once a
    line: a busy serve logs a line per lease. Handlers format under their lock,
    so the cache is never written by two threads at once."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"  # as logging.Formatter's default


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}``, the lease fields of a lease
    event at the top level, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        lease = getattr(record, "lease", None)
        if isinstance(lease, dict):
            entry.update({key: value for key, value in lease.items() if key not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once, for the command line."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format shows the caller, thread or process, and a busy daemon logs a
    # line per lease: skip gathering them ("Optimization" in Python's Logging HOWTO).
    logging._srcfile = None  # no stack walk per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
