"""How the long-running commands (`node`, `mcp`) write their log lines: text, or JSON lines.

Theory of operation: every log message in the project is `event=NAME key=value ...` (logfmt-like
text). As text, a line is `TIME [NODE] LEVEL LOGGER: MESSAGE`. With `--json`, each record is one
JSON object per line, for log pipelines: `time` (ISO 8601, UTC, milliseconds), `level`,
`logger`, the fixed fields given (the node id), `event` (the NAME, when the message starts with
`event=NAME`), `message` (the whole text) and, for an exception, `error` (its traceback).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

EVENT = re.compile(r"event=(\S+)")


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class JsonLines(logging.Formatter):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self.fields = fields

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        document: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            **self.fields,
        }
        if event := EVENT.match(message):
            document["event"] = event.group(1)
        document["message"] = message
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document)


def setup_logging(
    level: LogLevel, stream: TextIO, *, as_json: bool, fields: dict[str, str] | None = None
) -> None:
    """Log records of `level` and above to `stream`, as text or JSON lines; `fields` (e.g.
    {"node": "n1"}) go in every line."""
    handler = logging.StreamHandler(stream)
    fields = fields or {}
    if as_json:
        handler.setFormatter(JsonLines(fields))
    else:
        prefix = "".join(f"{value} " for value in fields.values())
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(level=level.value, handlers=[handler])
