"""Committed block embeddings for the bench, computed once per text and kept on disk."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fairgate.metering.embedding import MiniLMEmbedder, dequantize_vectors

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairgate-bench-audit"


class EmbeddingCache:
    def __init__(self, threads: int = 2) -> None:
        self.path = CACHE / "embeddings.pkl"
        self._items: dict[bytes, bytes] = {}
        if self.path.exists():
            self._items = pickle.loads(self.path.read_bytes())
        self._embedder: MiniLMEmbedder | None = None
        self.threads = threads
        self.embedded = 0
        self.seconds = 0.0

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode()).digest()[:16]

    def embedder(self) -> MiniLMEmbedder:
        if self._embedder is None:
            self._embedder = MiniLMEmbedder(threads=self.threads)
        return self._embedder

    def ensure(self, texts: Iterable[str], batch: int = 64) -> None:
        todo = sorted({t for t in texts if self._key(t) not in self._items}, key=len)
        if not todo:
            return
        start = time.process_time()
        embedder = self.embedder()
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            for text, q in zip(chunk, embedder.embed_quantized(chunk), strict=True):
                self._items[self._key(text)] = q
        self.embedded += len(todo)
        self.seconds += time.process_time() - start
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self._items))
        tmp.replace(self.path)

    def quantized(self, text: str) -> bytes:
        return self._items[self._key(text)]

    def vectors(self, texts: list[str]) -> np.ndarray:
        return dequantize_vectors([self._items[self._key(t)] for t in texts])
