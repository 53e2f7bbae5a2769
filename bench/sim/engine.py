"""The simulator's engine: ``replicas.engine_model.EngineModel``, the same engine the ``sim``
provider runs under the gateway, stepped on a virtual clock instead of the event loop.

``CostModel`` is its ``EngineParams``; ``GPU_LIKE`` are round numbers in the range of a small
model on one GPU (the numbers the first simulator rounds used), the calibrated CPU defaults are
``EngineParams()``.
"""

from __future__ import annotations

from fairgate.replicas.engine_model import EngineModel, EngineParams, Step

CostModel = EngineParams
StepOutput = Step

GPU_LIKE = EngineParams(
    max_num_seqs=8,
    step_s=0.025,
    step_s_per_seq=0.001,
    prefill_s_per_token=0.0002,
    prefill_chunk=2048,
    cache_tokens=30_000,
)


class Engine(EngineModel):
    """An engine plus whether a step of it is in progress on the virtual clock."""

    def __init__(self, params: EngineParams) -> None:
        super().__init__(params)
        self.busy = False

    @property
    def prompt_tokens(self) -> int:
        return self.totals.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        return self.totals.cached_tokens
