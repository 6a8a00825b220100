"""What sentence-transformers computes for EmbeddingGemma-300m, for embeddinggemma-check.mjs.

    python embeddinggemma_reference.py MODEL_DIR CASES_JSON OUT_JSON

CASES_JSON: {"texts": [...], "prompt_names": [null, "query", "document"], "threads": T}.
OUT_JSON gets, per prompt name, the token ids sentence-transformers fed the model and its
embeddings (f32, the model's own Normalize applied). Then the script prints ``ready`` and
times on request, so that the caller can alternate its own runs with these under the same
load: for each line ``time`` read from stdin it encodes every case's texts (``encode`` once per
prompt name, batch size 32) and prints the seconds taken; it ends at the end of stdin.
Needs torch, transformers and sentence-transformers; a sentence-transformers folder holds
configs and weights only, no code.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def token_ids(model: SentenceTransformer, texts: list[str]) -> list[list[int]]:
    features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    ids, mask = features["input_ids"].tolist(), features["attention_mask"].tolist()
    return [[t for t, m in zip(row, keep) if m] for row, keep in zip(ids, mask)]


def main() -> None:
    model_dir, cases_path, out_path = sys.argv[1:4]
    with open(cases_path, encoding="utf-8") as f:
        spec = json.load(f)
    torch.set_num_threads(int(spec.get("threads", 2)))
    model = SentenceTransformer(model_dir, device="cpu", model_kwargs={"dtype": torch.float32})
    model.eval()
    texts = spec["texts"]
    cases = []
    for name in spec["prompt_names"]:
        prompt = "" if name is None else model.prompts[name]
        kwargs = {} if name is None else {"prompt_name": name}
        embeddings = model.encode(texts, convert_to_numpy=True, batch_size=32, **kwargs)
        cases.append(
            {
                "prompt_name": name,
                "token_ids": token_ids(model, [prompt + t for t in texts]),
                "embeddings": [[float(x) for x in row] for row in embeddings.astype("float32")],
            }
        )

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "versions": {
                    "sentence_transformers": sentence_transformers.__version__,
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                },
                "threads": torch.get_num_threads(),
                "cases": cases,
            },
            f,
        )
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            continue
        start = time.perf_counter()
        for name in spec["prompt_names"]:
            kwargs = {} if name is None else {"prompt_name": name}
            model.encode(texts, convert_to_numpy=True, batch_size=32, **kwargs)
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
