"""The one canonical byte form of anything fairgate signs or hashes.

``canonical_json(value)`` is JSON with keys sorted, no whitespace, UTF-8 (``ensure_ascii`` off, so
non-ASCII text is its UTF-8 bytes, not ``\\u`` escapes). Signer, ledger, exporter and verifier all
call this function; nothing else produces signed bytes.

Only strings, integers, booleans, ``None``, lists and string-keyed dicts are allowed. Floats are
refused: their text form differs between languages, and a record an auditor re-serialises in
another language must give the same bytes (for this subset the output equals RFC 8785 JCS as long
as keys are ASCII, which record keys are). Money is carried as decimal strings and time as
RFC 3339 strings for the same reason.
"""

from __future__ import annotations

import json
from typing import Any

from fairgate.metering.errors import CanonicalJSONError

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


_SCALARS = (str, int, bool, type(None))


def _find(value: Any, path: str) -> str | None:
    """The path and reason of the first value without a canonical form (slow; errors only)."""
    if isinstance(value, float):
        return f"{path}: floats have no canonical form; use int or str"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string"
            found = _find(item, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, _SCALARS):
        return None
    return f"{path}: {type(value).__name__} is not JSON"


def _check(value: Any) -> None:
    # Iterative and exact-type first: this runs twice per ledger append (see bench/).
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or item is None or kind is bool:
            continue
        if kind is dict:
            for key, child in item.items():
                if type(key) is not str:
                    break
                push(child)
            else:
                continue
        elif kind is list or kind is tuple:
            extend(item)
            continue
        elif kind is not float and isinstance(item, _SCALARS):
            continue  # str and int subclasses (StrEnum, IntEnum) encode as their values
        raise CanonicalJSONError(_find(value, "$") or "$: no canonical form")


def canonical_json(value: Any) -> bytes:
    """Sorted-key, whitespace-free UTF-8 JSON of ``value``; raises ``CanonicalJSONError``."""
    _check(value)
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
        raise CanonicalJSONError(f"$: string is not valid Unicode: {exc}") from exc
