"""Server-sent events: the `data:` payloads of an event stream, one string per event.

Follows the WHATWG event-stream rules the server relies on: lines end in LF or CRLF;
`:` starts a comment; several `data:` lines of one event are joined with newlines; a blank
line ends the event. Fields other than `data` (`event`, `id`, `retry`) are not used by the
OpenAI protocol and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def iter_sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """Yields the data of each event, given the stream's raw lines (as `readline` gives them)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
    # A stream cut before its closing blank line still delivers what it sent.
    if data:
        yield "\n".join(data)
