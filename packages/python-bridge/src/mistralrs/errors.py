"""Exceptions the bridge raises: one base class, and the server's OpenAI error objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MistralRsError(Exception):
    """Base class of every error this package raises."""


class APIError(MistralRsError):
    """The server answered with an OpenAI error object, `{"error": {message, type, param, code}}`.

    `status` is the HTTP status, or None for an error sent as the last event of a stream
    (the status line had already said 200).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        details = ", ".join(
            f"{name}={value}"
            for name, value in (("type", self.type), ("param", self.param), ("code", self.code))
            if value
        )
        return f"{where}{self.message}" + (f" ({details})" if details else "")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, type={self.type!r}, "
            f"param={self.param!r}, code={self.code!r})"
        )


class BadRequestError(APIError):
    """400: a malformed request, a field out of range (`param` names it), an unsupported parameter."""


class AuthenticationError(APIError):
    """401: the server has an API key and the request's was missing or wrong."""


class NotFoundError(APIError):
    """404: an unknown path or model."""


class UnprocessableEntityError(APIError):
    """422: the model's chat template could not render the conversation."""


class RateLimitError(APIError):
    """429: the engine's queue is full; retry after a moment."""


class InternalServerError(APIError):
    """5xx: a fault of the server, or a server shutting down."""


_BY_STATUS: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def api_error_from_body(status: int | None, body: Any, request_id: str | None = None) -> APIError:
    """The exception for an error answer: `body` is the decoded JSON (or raw text) the server sent."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else repr(body)
        message = f"the server answered {status} without an OpenAI error object: {text[:500]}"
        return _class_for(status)(message, status=status, request_id=request_id)
    return _class_for(status)(
        str(error.get("message") or "unknown error"),
        status=status,
        type=_optional_str(error.get("type")),
        param=_optional_str(error.get("param")),
        code=_optional_str(error.get("code")),
        request_id=request_id,
    )


def _class_for(status: int | None) -> type[APIError]:
    if status is None:
        return APIError
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIError)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


class APIConnectionError(MistralRsError):
    """The server could not be reached, or the connection broke before a full answer came."""


class ServerStartError(MistralRsError):
    """The server the runner launched did not become ready: it exited, or did not answer in time.

    `output_tail` holds the last lines it printed (its stderr and stdout), which say why.
    """

    def __init__(self, message: str, *, output_tail: str = "", exit_code: int | None = None) -> None:
        full = f"{message}\n--- mistralrs-server output (last lines) ---\n{output_tail}" if output_tail else message
        super().__init__(full)
        self.output_tail = output_tail
        self.exit_code = exit_code
