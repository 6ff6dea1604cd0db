"""The daemon's logs: text for people, JSON Lines for log shippers (``log.format``).

Logs go to stderr; stdout belongs to the console channel's messages.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from postflow import config


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(settings: config.Settings, *, level: int = logging.INFO) -> None:
    """Send postflow's logs to stderr in the configured format."""
    fmt = str((settings.raw.get("log") or {}).get("format", "text"))
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("postflow")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # APScheduler logs every job run at INFO, and a job still running at its next poll
    # ("maximum number of running instances reached") at WARNING: both are expected here.
    # Its errors go through the same handler, so JSON logs stay JSON.
    scheduler = logging.getLogger("apscheduler")
    scheduler.handlers[:] = [handler]
    scheduler.setLevel(logging.ERROR)
    scheduler.propagate = False


def one_line(exc: BaseException) -> str:
    """An exception as one line (database errors carry multi-line driver messages)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"
