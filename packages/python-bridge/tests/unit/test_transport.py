"""HTTP and streams against a scripted loopback server: the failure modes a real model rarely shows."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mistralrs import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ChatCompletionRequest,
    InternalServerError,
    MistralRsError,
    Runner,
)

HI = [{"role": "user", "content": "Hi!"}]
CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
# path → (status, content type, body); each test installs its own.
Route = tuple[int, str, bytes]


def chunk(content: str) -> bytes:
    data = {**CHUNK, "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}]}
    return f"data: {json.dumps(data)}\n\n".encode()


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append((self.path, dict(self.headers), body))
                status, content_type, payload = server.routes[self.path]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("x-request-id", "req-42")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.http.shutdown()
    server.http.server_close()


def test_the_api_key_and_json_body_are_sent(scripted: ScriptedServer) -> None:
    error = {
        "error": {
            "message": "Incorrect API key",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    scripted.routes["/v1/chat/completions"] = (401, "application/json", json.dumps(error).encode())
    runner = Runner(base_url=scripted.url + "/v1", api_key="sk-test")
    with pytest.raises(AuthenticationError) as caught:
        runner.send_chat_completion_request(ChatCompletionRequest(messages=HI, max_tokens=3))
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (401, "invalid_api_key", "req-42")
    path, headers, body = scripted.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert json.loads(body) == {"model": "default", "messages": HI, "max_tokens": 3}


def test_an_error_event_after_the_stream_began_raises(scripted: ScriptedServer) -> None:
    error = {"error": {"message": "engine failed", "type": "server_error", "param": None, "code": "internal_error"}}
    scripted.routes["/v1/chat/completions"] = (
        200,
        "text/event-stream",
        chunk("Hel") + f"data: {json.dumps(error)}\n\n".encode(),
    )
    stream = Runner(base_url=scripted.url).send_chat_completion_request(ChatCompletionRequest(messages=HI, stream=True))
    assert next(iter(stream)).choices[0].delta.content == "Hel"
    with pytest.raises(APIError, match="engine failed") as caught:
        next(stream)
    assert caught.value.status is None and caught.value.code == "internal_error"


def test_a_stream_cut_before_done_is_not_taken_for_complete(scripted: ScriptedServer) -> None:
    scripted.routes["/v1/chat/completions"] = (200, "text/event-stream", chunk("a") + chunk("b"))
    stream = Runner(base_url=scripted.url).send_chat_completion_request(ChatCompletionRequest(messages=HI, stream=True))
    pieces: list[str] = []
    with pytest.raises(APIConnectionError, match=r"without data: \[DONE\]"):
        for c in stream:
            pieces.append(c.choices[0].delta.content or "")
    assert pieces == ["a", "b"]


def test_a_closed_stream_ends_quietly(scripted: ScriptedServer) -> None:
    scripted.routes["/v1/chat/completions"] = (200, "text/event-stream", chunk("a") + chunk("b") + b"data: [DONE]\n\n")
    with Runner(base_url=scripted.url).send_chat_completion_request(
        ChatCompletionRequest(messages=HI, stream=True)
    ) as stream:
        first = next(stream)
    assert first.choices[0].delta.content == "a"
    assert list(stream) == []


def test_a_gateway_page_and_a_wrong_shape(scripted: ScriptedServer) -> None:
    scripted.routes["/v1/chat/completions"] = (502, "text/html", b"<html>Bad Gateway</html>")
    runner = Runner(base_url=scripted.url)
    with pytest.raises(InternalServerError, match="Bad Gateway"):
        runner.send_chat_completion_request(ChatCompletionRequest(messages=HI))
    scripted.routes["/v1/chat/completions"] = (200, "application/json", b'{"id": "x"}')
    with pytest.raises(MistralRsError, match="unexpected ChatCompletionResponse"):
        runner.send_chat_completion_request(ChatCompletionRequest(messages=HI))


def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(APIConnectionError, match=f"127.0.0.1:{port}/health"):
        Runner(base_url=f"http://127.0.0.1:{port}").health()
