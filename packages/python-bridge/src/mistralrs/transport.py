"""HTTP with the standard library: JSON requests, and event streams read line by line.

One connection per request, so a runner can be used from several threads at once.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from .errors import APIConnectionError, api_error_from_body
from .sse import iter_sse_data


def split_base_url(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, root path) of a server address; a trailing `/v1` is the API's, not the root's."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http:// or https:// address, got {base_url!r}")
    root = parts.path.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, root


class HttpClient:
    """Talks to one server: `root_url` is its address without `/v1` (http://127.0.0.1:1234)."""

    def __init__(
        self, base_url: str, *, api_key: str | None, timeout_s: float, why_unreachable: Callable[[], str] | None = None
    ) -> None:
        """`why_unreachable` may explain a failed connection (a started server that exited)."""
        self._scheme, self._host, self._port, self._root = split_base_url(base_url)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.root_url = f"{self._scheme}://{host}:{self._port}{self._root}"
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._why_unreachable = why_unreachable

    def get_json(self, path: str) -> Any:
        return self._json_answer(*self._send("GET", path, None), path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._json_answer(*self._send("POST", path, body), path)

    def post_event_stream(self, path: str, body: dict[str, Any]) -> EventStream:
        connection, response = self._send("POST", path, body, accept="text/event-stream")
        if response.status >= 400:
            self._json_answer(connection, response, path)  # raises the server's error
        return EventStream(connection, response, f"{self.root_url}{path}", self._connection_error)

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, accept: str = "application/json"
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        headers = {"Accept": accept}
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connection_class = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=self._timeout_s)
        try:
            connection.request(method, f"{self._root}{path}", body=payload, headers=headers)
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise self._connection_error(f"{method} {self.root_url}{path} failed: {error}") from error

    def _connection_error(self, message: str) -> APIConnectionError:
        why = self._why_unreachable() if self._why_unreachable else ""
        return APIConnectionError(f"{message}\n{why}" if why else message)

    def _json_answer(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, path: str
    ) -> Any:
        """The decoded body of a complete answer, or the server's error raised."""
        url = f"{self.root_url}{path}"
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise self._connection_error(f"reading the answer of {url} failed: {error}") from error
        finally:
            connection.close()
        text = raw.decode("utf-8", errors="replace")
        try:
            decoded: Any = json.loads(text)
        except json.JSONDecodeError:
            decoded = text
        if response.status >= 400:
            raise api_error_from_body(response.status, decoded, response.getheader("x-request-id"))
        if isinstance(decoded, str):
            raise APIConnectionError(f"{url} answered {response.status} with a body that is not JSON: {text[:300]!r}")
        return decoded


class EventStream:
    """The data strings of a server-sent event stream; `close()` drops the connection early,
    which the server takes as a cancellation."""

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
        connection_error: Callable[[str], APIConnectionError],
    ) -> None:
        self._connection = connection
        self._response = response
        self._url = url
        self.connection_error = connection_error
        """An `APIConnectionError` for `message`, with why the server is gone when that is known."""

    def __iter__(self) -> Iterator[str]:
        try:
            yield from iter_sse_data(iter(self._response.readline, b""))
        except (OSError, http.client.HTTPException) as error:
            raise self.connection_error(f"the event stream of {self._url} broke: {error}") from error
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()
        self._connection.close()
