"""``python -m fairgate.replicas.vllm_server ARGS``: vLLM's OpenAI API server (ARGS are its
own), with the PyTorch extensions that cannot load here hidden first (see ``torch_guard``).

The hiding runs when this module is imported, not only when it is run: vLLM starts its
EngineCore with ``spawn``, and a spawned child imports the parent's ``__main__`` module (this
one) before anything else, so the child hides them too before it imports vLLM.

vLLM also inspects a model's class in a fresh interpreter (``python -m
vllm.model_executor.models.registry``) whenever its model-info cache has no entry, as on a
fresh machine; such a child would import the broken extensions. ``guard_registry_child``
points that command at this module, which hides them and then runs vLLM's inspection.
"""

from __future__ import annotations

import sys

from fairgate.replicas.torch_guard import hide_broken_extensions

HIDDEN = hide_broken_extensions(lambda message: print(f"fairgate: {message}", flush=True))
REGISTRY_CHILD = "--fairgate-registry-child"


def guard_registry_child() -> list[str]:
    from vllm.model_executor.models import registry

    command = [sys.executable, "-m", __spec__.name, REGISTRY_CHILD]
    registry._SUBPROCESS_COMMAND = command
    return command


def main() -> None:
    if sys.argv[1:] == [REGISTRY_CHILD]:
        from vllm.model_executor.models.registry import _run

        _run()
        return
    guard_registry_child()
    from vllm.entrypoints.launchers.api_server.entry import main as serve

    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
