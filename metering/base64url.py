"""base64url without padding (RFC 4648 §5), as JWS signatures and JWK keys spell bytes.

Decoding is strict: a character outside the alphabet is an error, never skipped, so that two
different strings never decode to the same signature or key.
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Raises ``ValueError`` on characters outside the base64url alphabet (``+``, ``/`` and
    ``=`` included: ``b64decode`` with ``altchars`` would take them as well)."""
    if not _ALPHABET.fullmatch(text):
        raise ValueError("not base64url: characters outside A-Z a-z 0-9 - _")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from exc
