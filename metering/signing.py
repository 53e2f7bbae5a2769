"""Ed25519 keys that sign ledger records, and the keyring that finds, stores and rotates them.

A key's id is the first 16 hex digits of SHA-256 over its raw 32-byte public key, so anyone
holding the public key derives the same id; a verifier never trusts a ``kid`` it was handed.

Where the active key comes from, first match wins:

1. ``FAIRGATE_SIGNING_KEY``: PKCS#8 PEM text (a Kubernetes Secret exposed as an env var);
2. ``pem_path``: a PEM file (a Kubernetes Secret mounted as a volume);
3. ``data_dir/keys/signing.pem``: generated on first start (directory 0700, file 0600).

Layout of ``data_dir/keys/``::

    signing.pem          the active private key (only when generated here)
    public/<kid>.pem     every public key that has been active, kept after rotation so old
                         records still verify; the JWKS lists them all

Rotation (``Keyring.rotate``) makes a fresh key active and keeps only the public half of the
old one: a retired private key cannot sign again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fairgate.metering.base64url import b64url, b64url_decode
from fairgate.metering.errors import SigningKeyError

KEY_ENV = "FAIRGATE_SIGNING_KEY"
KEYS_DIRNAME = "keys"
_ACTIVE_FILE = "signing.pem"
_PUBLIC_DIR = "public"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.DOTALL)
_log = logging.getLogger(__name__)


def key_id_for(raw_public_key: bytes) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


class PublicKey:
    """An Ed25519 public key with its derived key id."""

    __slots__ = ("_key", "key_id", "raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id_for(self.raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        try:
            return cls(Ed25519PublicKey.from_public_bytes(raw))
        except ValueError as exc:
            raise SigningKeyError(f"not a raw Ed25519 public key: {exc}") from exc

    @classmethod
    def from_pem(cls, pem: str | bytes) -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SigningKeyError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"PEM holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "x" not in jwk:
            raise SigningKeyError("JWK is not an OKP Ed25519 public key (RFC 8037)")
        return cls.from_raw(b64url_decode(str(jwk["x"])))

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def jwk(self) -> dict[str, str]:
        """RFC 8037 OKP JSON Web Key."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.raw),
            "kid": self.key_id,
            "use": "sig",
            "alg": "EdDSA",
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


class SigningKey:
    """An Ed25519 private key; ``sign`` returns the 64-byte signature."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"PEM holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def public_pem(self) -> str:
        return self.public_key.pem()

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def parse_public_keys(text: str) -> list[PublicKey]:
    """Public keys from PEM text (one or more blocks) or a JWKS / JWK JSON document."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SigningKeyError(f"not a JWKS document: {exc}") from exc
        jwks = doc.get("keys", [doc]) if isinstance(doc, dict) else []
        return [PublicKey.from_jwk(jwk) for jwk in jwks]
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(stripped)]
    if not blocks:
        raise SigningKeyError("no PEM block or JWKS found")
    keys: list[PublicKey] = []
    for block in blocks:
        if "PRIVATE KEY" in block.split("\n", 1)[0]:
            keys.append(SigningKey.from_pem(block).public_key)
        else:
            keys.append(PublicKey.from_pem(block))
    return keys


def _write_private(path: Path, data: str, *, overwrite: bool) -> bool:
    """Write an owner-only file atomically (temp file, fsync, rename or link).

    With ``overwrite`` False the file is created only if absent (``link`` fails on an existing
    name, so two processes starting at once agree on one key); returns whether it was written.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    written = True
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                written = False
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return written


class Keyring:
    """The active signing key and every public key that ever signed, for JWKS and verification."""

    def __init__(
        self,
        active: SigningKey,
        retired: Iterable[PublicKey] = (),
        keys_dir: Path | None = None,
        managed: bool = False,
    ) -> None:
        self.active = active
        self._retired = [key for key in retired if key != active.public_key]
        self.keys_dir = keys_dir
        self.managed = managed  # True when the active key lives in keys_dir and may be rotated

    @classmethod
    def load(
        cls,
        data_dir: Path,
        *,
        pem_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Keyring:
        """Find the active key (env var, then ``pem_path``, then ``data_dir``; else generate)."""
        env = os.environ if environ is None else environ
        keys_dir = Path(data_dir) / KEYS_DIRNAME
        managed = False
        if env.get(KEY_ENV, "").strip():
            active = SigningKey.from_pem(env[KEY_ENV])
        elif pem_path is not None:
            try:
                active = SigningKey.from_pem(Path(pem_path).read_bytes())
            except OSError as exc:
                raise SigningKeyError(f"cannot read signing key {pem_path}: {exc}") from exc
        else:
            active = cls._load_or_generate(keys_dir)
            managed = True
        retired = cls._read_public_dir(keys_dir)
        ring = cls(active, retired, keys_dir, managed)
        ring._remember(active.public_key, required=managed)
        return ring

    @staticmethod
    def _load_or_generate(keys_dir: Path) -> SigningKey:
        path = keys_dir / _ACTIVE_FILE
        if path.exists():
            if path.stat().st_mode & 0o077:
                _log.warning("signing key %s is readable by group or others", path)
            return SigningKey.from_pem(path.read_bytes())
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = SigningKey.generate()
        if not _write_private(path, key.private_pem(), overwrite=False):
            return SigningKey.from_pem(path.read_bytes())  # another process was first
        return key

    @staticmethod
    def _read_public_dir(keys_dir: Path) -> list[PublicKey]:
        public_dir = keys_dir / _PUBLIC_DIR
        if not public_dir.is_dir():
            return []
        keys: list[PublicKey] = []
        for path in sorted(public_dir.glob("*.pem")):
            keys.extend(parse_public_keys(path.read_text()))
        return keys

    def _remember(self, key: PublicKey, *, required: bool) -> None:
        """Keep the public half under ``keys/public/`` so records signed by it verify later."""
        if self.keys_dir is None:
            return
        path = self.keys_dir / _PUBLIC_DIR / f"{key.key_id}.pem"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(key.pem())
        except OSError as exc:
            if required:
                raise SigningKeyError(f"cannot store public key {path}: {exc}") from exc
            _log.warning("cannot store public key %s: %s", path, exc)

    @property
    def public_keys(self) -> list[PublicKey]:
        """The active key's public half first, then retired ones."""
        return [self.active.public_key, *self._retired]

    def public_key(self, key_id: str) -> PublicKey | None:
        return next((key for key in self.public_keys if key.key_id == key_id), None)

    def rotate(self) -> SigningKey:
        """Make a fresh key active; the old public key stays published, its private half goes."""
        if not self.managed or self.keys_dir is None:
            raise SigningKeyError(
                "the active key comes from FAIRGATE_SIGNING_KEY or a PEM path; "
                "rotate it by replacing that secret"
            )
        fresh = SigningKey.generate()
        self._remember(fresh.public_key, required=True)  # publish before it signs anything
        _write_private(self.keys_dir / _ACTIVE_FILE, fresh.private_pem(), overwrite=True)
        self._retired.insert(0, self.active.public_key)
        self.active = fresh
        return fresh

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """RFC 8037 OKP JWKS of every known key, the active one first."""
        return jwks_of(self.public_keys)


def jwks_of(public_keys: Iterable[PublicKey]) -> dict[str, list[dict[str, str]]]:
    """``{"keys": [...]}``: an RFC 8037 OKP JSON Web Key Set."""
    return {"keys": [key.jwk() for key in public_keys]}


def load_signing_key(
    data_dir: Path, *, pem_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> SigningKey:
    """The active key, as ``Keyring.load`` finds it (generating one on first start)."""
    return Keyring.load(data_dir, pem_path=pem_path, environ=environ).active
