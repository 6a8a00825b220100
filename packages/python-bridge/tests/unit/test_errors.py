"""OpenAI error objects become exceptions with their fields."""

from __future__ import annotations

import pytest

from mistralrs import APIError, BadRequestError, InternalServerError, NotFoundError, RateLimitError
from mistralrs.errors import api_error_from_body


def test_fields_of_the_error_object() -> None:
    body = {
        "error": {
            "message": "temperature must be at most 2",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    }
    error = api_error_from_body(400, body, "req-1")
    assert isinstance(error, BadRequestError)
    assert (error.status, error.message, error.type, error.param, error.code, error.request_id) == (
        400,
        "temperature must be at most 2",
        "invalid_request_error",
        "temperature",
        None,
        "req-1",
    )
    assert str(error) == "400 temperature must be at most 2 (type=invalid_request_error, param=temperature)"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, NotFoundError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIError),
    ],
)
def test_class_by_status(status: int, cls: type) -> None:
    assert type(api_error_from_body(status, {"error": {"message": "m"}})) is cls


def test_a_body_that_is_not_an_error_object_is_still_an_api_error() -> None:
    error = api_error_from_body(502, "<html>Bad Gateway</html>")
    assert isinstance(error, InternalServerError) and error.status == 502
    assert "without an OpenAI error object" in error.message and "Bad Gateway" in error.message
