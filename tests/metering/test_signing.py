"""Ed25519 keys: ids, storage, env/PEM loading, rotation, JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest

from fairgate.metering.errors import SigningKeyError
from fairgate.metering.signing import (
    KEY_ENV,
    Keyring,
    PublicKey,
    SigningKey,
    load_signing_key,
    parse_public_keys,
)


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    key = SigningKey.generate()
    assert len(key.public_key.raw) == 32
    assert key.key_id == hashlib.sha256(key.public_key.raw).hexdigest()[:16]


def test_sign_and_verify() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"message")
    assert len(signature) == 64
    assert key.public_key.verify(signature, b"message")
    assert not key.public_key.verify(signature, b"messagE")
    assert not SigningKey.generate().public_key.verify(signature, b"message")


def test_pem_round_trips() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_pem(key.private_pem())
    assert again.key_id == key.key_id
    assert PublicKey.from_pem(key.public_pem()) == key.public_key
    assert key.public_pem().startswith("-----BEGIN PUBLIC KEY-----")


def test_generated_on_first_start_with_owner_only_permissions(tmp_path: Path) -> None:
    ring = Keyring.load(tmp_path, environ={})
    path = tmp_path / "keys" / "signing.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert Keyring.load(tmp_path, environ={}).active.key_id == ring.active.key_id
    assert load_signing_key(tmp_path, environ={}).key_id == ring.active.key_id
    published = tmp_path / "keys" / "public" / f"{ring.active.key_id}.pem"
    assert PublicKey.from_pem(published.read_text()) == ring.active.public_key


def test_env_var_wins_then_pem_path(tmp_path: Path) -> None:
    from_env, from_file = SigningKey.generate(), SigningKey.generate()
    pem_path = tmp_path / "secret.pem"
    pem_path.write_text(from_file.private_pem())
    env = {KEY_ENV: from_env.private_pem()}
    assert Keyring.load(tmp_path, pem_path=pem_path, environ=env).active.key_id == from_env.key_id
    assert Keyring.load(tmp_path, pem_path=pem_path, environ={}).active.key_id == (from_file.key_id)
    assert not (tmp_path / "keys" / "signing.pem").exists()  # nothing generated


def test_bad_keys_raise(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError):
        Keyring.load(tmp_path, environ={KEY_ENV: "not a pem"})
    with pytest.raises(SigningKeyError):
        Keyring.load(tmp_path, pem_path=tmp_path / "missing.pem", environ={})
    with pytest.raises(SigningKeyError):
        PublicKey.from_raw(b"short")
    with pytest.raises(SigningKeyError):
        parse_public_keys("nothing here")


def test_rotation_keeps_old_public_keys(tmp_path: Path) -> None:
    ring = Keyring.load(tmp_path, environ={})
    old = ring.active
    fresh = ring.rotate()
    assert fresh.key_id != old.key_id
    assert [k.key_id for k in ring.public_keys] == [fresh.key_id, old.key_id]
    reloaded = Keyring.load(tmp_path, environ={})
    assert reloaded.active.key_id == fresh.key_id
    assert {k.key_id for k in reloaded.public_keys} == {fresh.key_id, old.key_id}
    assert reloaded.public_key(old.key_id) == old.public_key
    assert old.private_pem() not in (tmp_path / "keys" / "signing.pem").read_text()


def test_rotation_of_an_external_key_is_refused(tmp_path: Path) -> None:
    ring = Keyring.load(tmp_path, environ={KEY_ENV: SigningKey.generate().private_pem()})
    with pytest.raises(SigningKeyError):
        ring.rotate()


def test_jwks_is_rfc8037_okp(tmp_path: Path) -> None:
    ring = Keyring.load(tmp_path, environ={})
    ring.rotate()
    jwks = ring.jwks()
    assert len(jwks["keys"]) == 2
    for jwk, key in zip(jwks["keys"], ring.public_keys, strict=True):
        assert jwk == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(key.raw).rstrip(b"=").decode(),
            "kid": key.key_id,
            "use": "sig",
            "alg": "EdDSA",
        }
        assert "=" not in jwk["x"]
        assert PublicKey.from_jwk(jwk) == key


def test_parse_public_keys_from_pem_bundle_and_jwks() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    bundle = a.public_pem() + "\n" + b.public_pem()
    assert parse_public_keys(bundle) == [a.public_key, b.public_key]
    jwks = json.dumps({"keys": [a.public_key.jwk(), b.public_key.jwk()]})
    assert parse_public_keys(jwks) == [a.public_key, b.public_key]
    assert parse_public_keys(json.dumps(a.public_key.jwk())) == [a.public_key]
    assert parse_public_keys(a.private_pem()) == [a.public_key]  # the public half only
