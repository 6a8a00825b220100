"""Which model the runner's server loads, in the shape of mistral.rs's `Which` selector.

Each variant turns into the `mistralrs-server` model subcommand that loads it.
"""

from __future__ import annotations

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


class Which:
    """The model to load: `Which.GGUF(...)`, `Which.Plain(...)` or `Which.Default()`."""

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
    class Default:
        """The default model (SmolLM2-135M-Instruct Q4_1), fetched into the cache on first use."""

        def cli_args(self) -> list[str]:
            return []


ModelSelector = Which.GGUF | Which.Plain | Which.Default
