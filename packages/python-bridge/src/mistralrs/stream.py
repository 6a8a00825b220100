"""An iterator over a streamed answer's chunks, closable early (also as a context manager)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import APIConnectionError, api_error_from_body
from .responses import parse_response
from .transport import EventStream

T = TypeVar("T")


class Stream(Generic[T]):
    """Yields one response object per event until `data: [DONE]`.

    An error event (the server failed after the stream began) raises `APIError`; a stream that
    ends without `[DONE]` raises `APIConnectionError`, so a cut answer never looks complete.
    Leaving the loop early and calling `close()` (or using `with`) cancels the generation.
    """

    def __init__(self, events: EventStream, chunk_class: type[T]) -> None:
        self._events = events
        self._chunk_class = chunk_class
        self._chunks: Iterator[T] | None = None
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        if self._chunks is None:
            self._chunks = self._read()
        return next(self._chunks)

    def _read(self) -> Iterator[T]:
        for data in self._events:
            if data == "[DONE]":
                self.close()
                return
            if self._closed:
                return
            try:
                decoded = json.loads(data)
            except json.JSONDecodeError as error:
                raise APIConnectionError(f"a stream event is not JSON: {data[:300]!r}") from error
            if isinstance(decoded, dict) and "error" in decoded:
                raise api_error_from_body(None, decoded)
            yield parse_response(self._chunk_class, decoded)
        if not self._closed:
            raise self._events.connection_error("the stream ended without data: [DONE] (the connection closed early)")

    def close(self) -> None:
        self._closed = True
        self._events.close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
