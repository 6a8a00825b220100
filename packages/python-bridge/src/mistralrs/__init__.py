"""mistral.rs's Python API (`Runner`, `Which`, `ChatCompletionRequest`, `EmbeddingRequest`) over mistralrs-ts's
OpenAI-compatible server: the runner starts `mistralrs-server` or connects to a running one.

    from mistralrs import Runner, Which, ChatCompletionRequest

    with Runner(which=Which.Default()) as runner:
        res = runner.send_chat_completion_request(
            ChatCompletionRequest(messages=[{"role": "user", "content": "Hi!"}], max_tokens=32)
        )
        print(res.choices[0].message.content)
"""

from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    MistralRsError,
    NotFoundError,
    RateLimitError,
    ServerStartError,
    UnprocessableEntityError,
)
from .requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from .responses import (
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    Delta,
    FunctionCall,
    Logprobs,
    ResponseLogprob,
    ResponseMessage,
    ToolCall,
    TopLogprob,
    Usage,
)
from .runner import Runner
from .server_command import find_server_command, pull_model
from .server_process import ServerOptions
from .stream import Stream
from .which import Architecture, EmbeddingArchitecture, ModelDType, ModelSelector, SpeculativeConfig, Which

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "Architecture",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionChunkResponse",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "Choice",
    "ChunkChoice",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "Delta",
    "EmbeddingArchitecture",
    "EmbeddingRequest",
    "FunctionCall",
    "InternalServerError",
    "Logprobs",
    "MistralRsError",
    "ModelDType",
    "ModelSelector",
    "NotFoundError",
    "RateLimitError",
    "ResponseLogprob",
    "ResponseMessage",
    "Runner",
    "ServerOptions",
    "ServerStartError",
    "SpeculativeConfig",
    "Stream",
    "ToolCall",
    "TopLogprob",
    "UnprocessableEntityError",
    "Usage",
    "Which",
    "find_server_command",
    "pull_model",
]
