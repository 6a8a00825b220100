"""Drives the real huggingface_hub (PyPI) for hub-interop.test.ts: HF_ENDPOINT and HF_HUB_CACHE
come from the environment (the Hub fixture and the shared cache). Prints one JSON object.

    python hf_hub_interop.py download REPO FILE     hf_hub_download
    python hf_hub_interop.py snapshot REPO          snapshot_download
    python hf_hub_interop.py find REPO FILE         try_to_load_from_cache, then a local_files_only download
    python hf_hub_interop.py scan                   scan_cache_dir
    python hf_hub_interop.py bridge REPO [FILE]     the mistralrs bridge's Runner with Which.GGUF (or Plain)
    python hf_hub_interop.py hold-lock PATH         holds huggingface_hub's download lock until stdin closes
"""

import json
import sys

from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache


def main(argv: list[str]) -> object:
    command, *args = argv
    if command == "download":
        return {"path": hf_hub_download(args[0], args[1])}
    if command == "snapshot":
        return {"path": snapshot_download(args[0])}
    if command == "find":
        cached = try_to_load_from_cache(args[0], args[1])
        local = hf_hub_download(args[0], args[1], local_files_only=True)
        return {"cached": cached if isinstance(cached, str) else None, "local": local}
    if command == "scan":
        info = scan_cache_dir()
        return {
            "repos": [
                {
                    "repo_id": repo.repo_id,
                    "size_on_disk": repo.size_on_disk,
                    "nb_files": repo.nb_files,
                    "revisions": [
                        {
                            "commit_hash": revision.commit_hash,
                            "refs": sorted(revision.refs),
                            "files": sorted(f.file_name for f in revision.files),
                        }
                        for revision in repo.revisions
                    ],
                }
                for repo in sorted(info.repos, key=lambda r: r.repo_id)
            ],
            "warnings": [str(w) for w in info.warnings],
        }
    if command == "hold-lock":
        from huggingface_hub.utils import WeakFileLock

        with WeakFileLock(args[0]):
            print(json.dumps({"locked": args[0]}), flush=True)
            sys.stdin.read()
        return {"released": args[0]}
    if command == "bridge":
        from mistralrs import CompletionRequest, CompletionResponse, Runner, Which

        which = (
            Which.GGUF(quantized_model_id=args[0], quantized_filename=args[1])
            if len(args) > 1
            else Which.Plain(model_id=args[0])
        )
        with Runner(which=which) as runner:
            response = runner.send_completion_request(
                CompletionRequest(prompt="Once upon a time", max_tokens=6, temperature=0.0)
            )
            assert isinstance(response, CompletionResponse)
            return {"model": response.model, "text": response.choices[0].text}
    raise SystemExit(f"unknown command {command}")


print(json.dumps(main(sys.argv[1:])))
