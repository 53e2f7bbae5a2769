"""``python -m fairgate.replicas.vllm_server ARGS``: vLLM's OpenAI API server (ARGS are its
own), with the PyTorch extensions that cannot load here hidden first (see ``torch_guard``).

The hiding runs when this module is imported, not only when it is run: vLLM starts its
EngineCore with ``spawn``, and a spawned child imports the parent's ``__main__`` module (this
one) before anything else, so the child hides them too before it imports vLLM.
"""

from __future__ import annotations

from fairgate.replicas.torch_guard import hide_broken_extensions

HIDDEN = hide_broken_extensions(lambda message: print(f"fairgate: {message}", flush=True))


def main() -> None:
    from vllm.entrypoints.launchers.api_server.entry import main as serve

    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
