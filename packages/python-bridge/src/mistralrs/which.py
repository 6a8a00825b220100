"""Which model the runner's server loads, in the shape of mistral.rs's `Which` selector.

Each variant turns into the `mistralrs-server` model subcommand that loads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum


class Architecture(Enum):
    """mistral.rs's names for plain (safetensors) architectures.

    Passed as `-a`: the folder's `config.json` must be of this architecture, or the server
    refuses to load it.
    """

    Mistral = "mistral"
    Gemma = "gemma"
    Gemma2 = "gemma2"
    Gemma3 = "gemma3"
    Mixtral = "mixtral"
    Llama = "llama"
    Phi2 = "phi2"
    Phi3 = "phi3"
    Phi3_5MoE = "phi3.5moe"
    Qwen2 = "qwen2"
    Qwen3 = "qwen3"
    Qwen3Moe = "qwen3moe"
    Starcoder2 = "starcoder2"
    DeepseekV2 = "deepseekv2"
    DeepseekV3 = "deepseekv3"
    GLM4 = "glm4"
    GLM4Moe = "glm4moe"
    GLM4MoeLite = "glm4moelite"
    GptOss = "gptoss"
    SmolLm3 = "smollm3"
    GraniteMoeHybrid = "granitemoehybrid"
    Lfm2 = "lfm2"
    Lfm2Moe = "lfm2_moe"
    Qwen3Next = "qwen3next"


class EmbeddingArchitecture(Enum):
    """mistral.rs's names for embedding models; each is passed as the `-a` of its `model_type`."""

    EmbeddingGemma = "embeddinggemma"
    Qwen3Embedding = "qwen3embedding"


# mistral.rs's embedding architecture → the `model_type` (or mistral.rs name) `-a` takes.
_EMBEDDING_ARCH_FLAG = {"embeddinggemma": "gemma3", "qwen3embedding": "qwen3"}


class ModelDType(Enum):
    """How a safetensors model's float matrices are stored once loaded (`--dtype`); `Auto` keeps
    the checkpoint's types."""

    Auto = "auto"
    BF16 = "bf16"
    F16 = "f16"
    F32 = "f32"


class Which:
    """The model to load: `Which.GGUF(...)`, `Which.Plain(...)`, `Which.Embedding(...)` or `Which.Default()`."""

    @dataclass(frozen=True)
    class GGUF:
        """A GGUF model: `quantized_model_id` is a folder (with `quantized_filename` the file in
        it), a `.gguf` file, a registry id (`smollm2-135m-instruct-q4_1`) or a Hugging Face Hub
        repository `org/name` (with `quantized_filename`, or as `org/name:Q4_K_M`), downloaded
        once into the Hugging Face cache. A list of file names gives the parts of a split GGUF.

        `tok_model_id` (a folder or a Hub repository) supplies the tokenizer and chat template in
        place of the GGUF's, as in mistral.rs.
        """

        quantized_model_id: str
        quantized_filename: str | list[str] | None = None
        tok_model_id: str | None = None

        def cli_args(self) -> list[str]:
            args = ["gguf", "-m", self.quantized_model_id]
            files = (
                [self.quantized_filename] if isinstance(self.quantized_filename, str) else self.quantized_filename or []
            )
            for file in files:
                args += ["-f", file]
            if self.tok_model_id is not None:
                args += ["-t", self.tok_model_id]
            return args

    @dataclass(frozen=True)
    class Plain:
        """A Hugging Face model: a folder (`config.json`, safetensors weights, `tokenizer.json`) or
        a Hub repository `org/name`, downloaded once into the Hugging Face cache."""

        model_id: str
        arch: Architecture | str | None = None

        def cli_args(self) -> list[str]:
            args = ["plain", "-m", self.model_id]
            if self.arch is not None:
                args += ["-a", self.arch.value if isinstance(self.arch, Architecture) else self.arch]
            return args

    @dataclass(frozen=True)
    class Embedding:
        """An embedding model, served on `/v1/embeddings` (`Runner.send_embedding_request`): a
        sentence-transformers folder or Hub repository `org/name` (EmbeddingGemma,
        Qwen3-Embedding).

        `arch` (an `EmbeddingArchitecture`, or a `model_type` string) must be the model's, or the
        server refuses it. `tokenizer_json` is a path to a file named `tokenizer.json`, whose folder
        supplies the tokenizer (`-t`). mistral.rs's `topology`, `from_uqff`, `write_uqff` and
        `hf_cache_path` are not implemented: they must stay None.
        """

        model_id: str
        arch: EmbeddingArchitecture | str | None = None
        tokenizer_json: str | None = None
        topology: str | None = None
        from_uqff: str | list[str] | None = None
        write_uqff: str | None = None
        dtype: ModelDType | str | None = ModelDType.Auto
        hf_cache_path: str | None = None

        def __post_init__(self) -> None:
            unsupported = [name for name in _EMBEDDING_UNSUPPORTED if getattr(self, name) is not None]
            if unsupported:
                raise ValueError(
                    f"Which.Embedding: {', '.join(unsupported)}: mistral.rs options this server does not implement "
                    "(leave them None)"
                )
            if self.tokenizer_json is not None and os.path.basename(self.tokenizer_json) != "tokenizer.json":
                raise ValueError(
                    "Which.Embedding: tokenizer_json must be a file named tokenizer.json (the server reads the "
                    f"tokenizer.json of its folder), got {self.tokenizer_json!r}"
                )

        def cli_args(self) -> list[str]:
            args = ["embedding", "-m", self.model_id]
            if self.arch is not None:
                arch = self.arch.value if isinstance(self.arch, EmbeddingArchitecture) else self.arch
                args += ["-a", _EMBEDDING_ARCH_FLAG.get(arch, arch)]
            if self.tokenizer_json is not None:
                args += ["-t", self.tokenizer_json]  # the server takes the file's folder
            dtype = self.dtype.value if isinstance(self.dtype, ModelDType) else self.dtype
            if dtype not in (None, ModelDType.Auto.value):
                args += ["--dtype", dtype]
            return args

    @dataclass(frozen=True)
    class Default:
        """The default model (SmolLM2-135M-Instruct Q4_1), fetched into the cache on first use."""

        def cli_args(self) -> list[str]:
            return []


_EMBEDDING_UNSUPPORTED = ("topology", "from_uqff", "write_uqff", "hf_cache_path")


@dataclass(frozen=True)
class SpeculativeConfig:
    """Speculative decoding for the server's model (`Runner(speculative=...)`): proposals by
    prompt lookup (`kind="ngram"`) or by a draft model sharing the tokenizer (`kind="draft"`,
    `draft_model` a .gguf, folder, registry id or Hub repository), `gamma` tokens per step at
    most. The output is exactly the model's own (greedy: the same tokens)."""

    kind: str = "ngram"
    draft_model: str | None = None
    draft_file: str | None = None
    gamma: int | None = None
    draft_p_min: float | None = None
    ngram_min: int | None = None
    ngram_max: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("ngram", "draft"):
            raise ValueError(f"SpeculativeConfig: kind must be 'ngram' or 'draft', got {self.kind!r}")
        if self.kind == "draft" and self.draft_model is None:
            raise ValueError("SpeculativeConfig: kind='draft' needs draft_model")

    def cli_args(self) -> list[str]:
        return ["--speculative", self.kind] + flag_args(
            ("--draft-model", self.draft_model),
            ("--draft-file", self.draft_file),
            ("--gamma", self.gamma),
            ("--draft-p-min", self.draft_p_min),
            ("--ngram-min", self.ngram_min),
            ("--ngram-max", self.ngram_max),
        )


def flag_args(*flags: tuple[str, object]) -> list[str]:
    """`[flag, value, …]` for the flags whose value is given (not None)."""
    args: list[str] = []
    for flag, value in flags:
        if value is not None:
            args += [flag, str(value)]
    return args


ModelSelector = Which.GGUF | Which.Plain | Which.Embedding | Which.Default
