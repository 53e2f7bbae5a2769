"""Ends every request the same way: one signed ledger record, and the metrics that go with it."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from fairgate.gateway.config import Config
from fairgate.gateway.errors import LedgerUnavailable
from fairgate.gateway.metrics import GatewayMetrics
from fairgate.metering.commitment import Commitment, HiddenCommitter
from fairgate.metering.errors import DuplicateRequestError, LedgerError
from fairgate.metering.fingerprints import EmbeddingQueue, StreamingCommitter
from fairgate.metering.ledger import Ledger, open_ledger
from fairgate.metering.ledger_writer import LedgerWriter
from fairgate.metering.pricing import ModelPrices, PriceTable
from fairgate.metering.record import LedgerEntry
from fairgate.metering.signing import Keyring
from fairgate.metering.usage import Usage

log = logging.getLogger("fairgate.requests")


class BlockEmbedder(Protocol):
    model_id: str

    def embed_quantized(self, texts: Any) -> list[bytes]: ...


def load_block_embedder(mode: str) -> BlockEmbedder | None:
    """The embedder for commitment protocol 2 (``audit.embeddings``), or ``None`` for protocol 1."""
    if mode == "off":
        return None
    from fairgate.metering.embedding import EmbeddingUnavailable, load_embedder

    try:
        return load_embedder()
    except EmbeddingUnavailable as exc:
        if mode == "on":
            raise
        logging.getLogger("fairgate").warning("hidden blocks committed without embeddings: %s", exc)
        return None


class Recorder:
    def __init__(
        self,
        ledger: Ledger,
        metrics: GatewayMetrics,
        prices: PriceTable,
        block_size: int,
        keyring: Keyring,
        embedder: BlockEmbedder | None = None,
    ) -> None:
        self.ledger = ledger
        self.writer = LedgerWriter(ledger)  # one thread, batches of whatever has queued
        self.metrics = metrics
        self.prices = prices
        self.block_size = block_size
        self.keyring = keyring
        self.embedder = embedder
        # One thread: embedding blocks costs about 6 ms of CPU per block; it must not take
        # every core from the event loop and the engines.
        self.embed_queue = EmbeddingQueue()
        self.failing = False  # the last append failed: refuse new work (check_writable)

    @classmethod
    def open(cls, config: Config, metrics: GatewayMetrics) -> Recorder:
        keyring = Keyring.load(config.data_dir, pem_path=config.ledger.signing_key)
        ledger = open_ledger(
            config.ledger.url, config.data_dir, keyring.active, sync=config.ledger.sync
        )
        prices = PriceTable(
            {
                m.name: ModelPrices.from_config(m.name, m.prices.model_dump(exclude_none=True))
                for m in config.models
                if m.prices is not None
            }
        )
        embedder = load_block_embedder(config.audit.embeddings)
        return cls(ledger, metrics, prices, config.ledger.block_size, keyring, embedder)

    def jwks(self) -> dict[str, Any]:
        return self.keyring.jwks()

    def check_writable(self) -> None:
        """No request is served that cannot be billed: while appends fail (a full disk, a lost
        database) new work is refused with 503. The refusal's own record probes the ledger;
        once one is written, work is taken again."""
        if self.failing:
            raise LedgerUnavailable(
                "The billing ledger cannot record requests right now; retry later.",
                headers={"Retry-After": "5"},
            )

    def committer(self) -> HiddenCommitter:
        if self.embedder is None:
            return HiddenCommitter(self.block_size)
        # Full blocks are embedded on the embedding thread while the reasoning still streams.
        embedder = self.embedder
        return StreamingCommitter(
            self.block_size, embedder.model_id, embedder.embed_quantized, self.embed_queue.submit
        )

    async def record(
        self,
        *,
        request_id: str,
        tenant: str,
        model: str,
        replica: str | None,
        status: str,
        status_code: int,
        started_at: float,
        usage: Usage,
        committer: HiddenCommitter | None = None,
        duration: float | None = None,
        queue_wait: float | None = None,
    ) -> dict[str, Any]:
        """Append the record (durably, off the event loop) and return the client's receipt."""
        if committer and committer.leaves and self.embedder is not None:
            await self._fingerprint(request_id, committer, self.embedder)
        commitment = committer.commit() if committer else Commitment.empty()
        cost = self.prices.cost(model, usage)
        finished = time.time()
        elapsed = finished - started_at
        entry = LedgerEntry(
            request_id=request_id,
            tenant=tenant,
            model=model,
            replica=replica,
            status=status,
            status_code=status_code,
            started_at=started_at,
            finished_at=finished,
            usage=usage,
            commitment=commitment,
            opening=committer.opening() if committer and commitment.leaves else None,
            cost=cost,
        )
        clock = time.perf_counter()
        try:
            receipt = await self.writer.append(entry)
        except DuplicateRequestError:
            raise
        except LedgerError as error:
            self.failing = True
            self.metrics.ledger_failures.inc()
            log.error("ledger append for %s failed, refusing new work: %s", request_id, error)
            raise LedgerUnavailable(
                "The billing ledger cannot record this request; retry later.",
                headers={"Retry-After": "5"},
            ) from error
        self.failing = False
        self.metrics.ledger_append.observe(time.perf_counter() - clock)
        self.metrics.ledger_records.labels(status).inc()
        self.metrics.observe_request(
            tenant,
            model,
            status,
            usage,
            replica=replica,
            cost=cost,
            duration=duration,
            queue_wait=queue_wait,
        )
        self._log(request_id, tenant, model, replica, status, status_code, usage, elapsed)
        return receipt.to_dict()

    async def _fingerprint(
        self, request_id: str, committer: HiddenCommitter, embedder: BlockEmbedder
    ) -> None:
        """Protocol 2 for this request, unless the embedding backlog is full (then protocol 1)."""
        queue = self.embed_queue
        blocks = (
            committer.pending_blocks()
            if isinstance(committer, StreamingCommitter)
            else -(-committer.leaves // committer.block_size)
        )
        if not queue.admit(blocks):
            log.warning("embedding backlog full: %s committed without embeddings", request_id)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                queue.pool, committer.fingerprint, embedder.model_id, embedder.embed_quantized
            )
        except Exception:  # the record must still be written: protocol 1 then
            log.exception("embedding the hidden blocks of %s failed", request_id)
        finally:
            queue.done(blocks)

    def _log(
        self,
        request_id: str,
        tenant: str,
        model: str,
        replica: str | None,
        status: str,
        code: int,
        usage: Usage,
        elapsed: float,
    ) -> None:
        if not log.isEnabledFor(logging.INFO):  # the fields cost more than the check
            return
        # OpenTelemetry GenAI semantic-convention attribute names, for log pipelines.
        log.info(
            "request finished",
            extra={
                "fairgate": {
                    "request_id": request_id,
                    "tenant": tenant,
                    "gen_ai.request.model": model,
                    "fairgate.replica": replica,
                    "fairgate.status": status,
                    "http.status_code": code,
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                    "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                    "duration_s": round(elapsed, 4),
                    "at": datetime.now(UTC).isoformat(),
                }
            },
        )

    def close(self) -> None:
        self.embed_queue.shutdown()
        self.writer.close()
        self.ledger.close()
