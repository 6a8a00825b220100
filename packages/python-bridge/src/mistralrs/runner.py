"""`Runner`: mistral.rs's Python entry point, over the OpenAI-compatible HTTP server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from types import TracebackType
from typing import Any

from .errors import MistralRsError
from .requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from .responses import (
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    CompletionResponse,
    embedding_vectors,
    parse_response,
)
from .server_command import ServerCommand, find_server_command
from .server_process import ServerOptions, ServerProcess
from .stream import Stream
from .transport import HttpClient
from .which import ModelSelector, SpeculativeConfig, Which


class Runner:
    """Sends requests to a `mistralrs-server`: one it starts, or one already running.

    `Runner(which=Which.GGUF(...))` starts the server on a free loopback port with that model
    (no `which`: the default model) and stops it on `close()`, at the end of a `with` block, when
    the runner is garbage-collected, or at exit. `Runner(base_url="http://127.0.0.1:1234",
    api_key=...)` connects to a running server instead. The keyword options are the server's
    flags under mistral.rs's names (see `ServerOptions`); `server_args` adds flags as they are.
    """

    def __init__(
        self,
        which: ModelSelector | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_seqs: int | None = None,
        max_waiting: int | None = None,
        prefix_cache_n: int | None = None,
        token_source: str | None = None,
        chat_template: str | None = None,
        pa_gpu_mem: float | None = None,
        pa_gpu_mem_usage: float | None = None,
        pa_ctxt_len: int | None = None,
        pa_blk_size: int | None = None,
        pa_cache_type: str | None = None,
        speculative: SpeculativeConfig | None = None,
        server_command: ServerCommand | None = None,
        server_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 300.0,
        request_timeout_s: float = 600.0,
    ) -> None:
        options = ServerOptions(
            which=which or Which.Default(),
            api_key=api_key,
            max_seqs=max_seqs,
            max_waiting=max_waiting,
            prefix_cache_n=prefix_cache_n,
            token_source=token_source,
            chat_template=chat_template,
            pa_gpu_mem=pa_gpu_mem,
            pa_gpu_mem_usage=pa_gpu_mem_usage,
            pa_ctxt_len=pa_ctxt_len,
            pa_blk_size=pa_blk_size,
            pa_cache_type=pa_cache_type,
            speculative=speculative,
            extra_args=tuple(server_args),
        )
        self._server: ServerProcess | None = None
        self._closed = False
        if base_url is None:
            command = find_server_command(server_command)
            self._server = ServerProcess(command, options, env=env, startup_timeout_s=startup_timeout_s)
            base_url = self._server.url
        else:
            given = _launch_options_given(options)
            given += [name for name, value in (("server_command", server_command), ("env", env)) if value is not None]
            if given:
                wrong = ", ".join(given)
                raise ValueError(f"base_url connects to a running server; {wrong} only apply to a server it starts")
        why = self._server.exit_note if self._server else None
        self._http = HttpClient(base_url, api_key=api_key, timeout_s=request_timeout_s, why_unreachable=why)

    # ---- requests ----

    def send_chat_completion_request(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | Stream[ChatCompletionChunkResponse]:
        """The chat completion, or with `stream=True` an iterator of chunks (`chunk.choices[0].delta.content`)."""
        body = request.to_body()
        if request.stream:
            return Stream(self._client().post_event_stream("/v1/chat/completions", body), ChatCompletionChunkResponse)
        return parse_response(ChatCompletionResponse, self._client().post_json("/v1/chat/completions", body))

    def send_completion_request(self, request: CompletionRequest) -> CompletionResponse | Stream[CompletionResponse]:
        """The text completion, or with `stream=True` an iterator of chunks (`chunk.choices[0].text`)."""
        body = request.to_body()
        if request.stream:
            return Stream(self._client().post_event_stream("/v1/completions", body), CompletionResponse)
        return parse_response(CompletionResponse, self._client().post_json("/v1/completions", body))

    def send_embedding_request(self, request: EmbeddingRequest, model_id: str | None = None) -> list[list[float]]:
        """Generate embeddings for the supplied inputs and return one embedding vector per input.

        `model_id`, when given, names the model in place of `request.model`. The server must
        serve an embedding model (`Which.Embedding`); a generation model answers 400
        (`BadRequestError`, `code == "model_not_supported"`).
        """
        body = request.to_body()
        if model_id is not None:
            body["model"] = model_id
        return embedding_vectors(self._client().post_json("/v1/embeddings", body))

    def health(self) -> dict[str, Any]:
        """`GET /health`: `{"status": "ok", "model": ID}`."""
        answer: dict[str, Any] = self._client().get_json("/health")
        return answer

    def list_models(self) -> list[str]:
        """The ids of `GET /v1/models` (the server serves one model)."""
        return [model["id"] for model in self._client().get_json("/v1/models")["data"]]

    # ---- the server ----

    @property
    def base_url(self) -> str:
        """The API's address with `/v1`, as OpenAI clients take it (`OpenAI(base_url=runner.base_url)`)."""
        return f"{self._http.root_url}/v1"

    @property
    def server_pid(self) -> int | None:
        """The process id of the server this runner started (also its process group); None when connected."""
        return None if self._server is None else self._server.pid

    @property
    def server_argv(self) -> list[str] | None:
        """The command line the server was started with; None when connected."""
        return None if self._server is None else list(self._server.argv)

    def server_output(self) -> str:
        """The last lines the started server printed (empty when connected)."""
        return "" if self._server is None else self._server.output_tail()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops the server this runner started; a connected runner just stops sending."""
        self._closed = True
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.base_url
        return f"Runner({state}{f', pid={self.server_pid}' if self._server else ''})"

    def _client(self) -> HttpClient:
        if self._closed:
            raise MistralRsError("this Runner is closed")
        return self._http


def _launch_options_given(options: ServerOptions) -> list[str]:
    """The options (by their `Runner` names) set to something else than their default."""
    default = ServerOptions(api_key=options.api_key)
    names = [f.name for f in fields(options) if getattr(options, f.name) != getattr(default, f.name)]
    return ["server_args" if name == "extra_args" else name for name in names]
