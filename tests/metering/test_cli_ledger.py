"""``fairgate ledger export|verify|public-key|rotate-key`` through argparse, with a stub config."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fairgate.gateway import cli_ledger
from fairgate.metering.ledger import open_ledger
from fairgate.metering.signing import Keyring, PublicKey


@dataclass
class StubConfig:
    data_dir: Path
    ledger_url: str | None = None
    pricing: dict[str, Any] | None = None


def run(argv: list[str], config: StubConfig | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairgate")
    sub = parser.add_subparsers(dest="command", required=True)
    loaded: list[argparse.Namespace] = []

    def load_config(args: argparse.Namespace) -> StubConfig:
        loaded.append(args)
        assert config is not None, "this command should not need a config"
        return config

    cli_ledger.register(sub, load_config)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def populated(tmp_path: Path, helpers: Any, monkeypatch: pytest.MonkeyPatch) -> StubConfig:
    monkeypatch.delenv("FAIRGATE_SIGNING_KEY", raising=False)
    config = StubConfig(data_dir=tmp_path / "data")
    key = Keyring.load(config.data_dir).active
    with open_ledger(None, config.data_dir, key) as ledger:
        helpers.fill(ledger, 8)
    return config


def public_key_file(config: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert run(["ledger", "public-key"], config) == 0
    path = tmp_path / "pub.pem"
    path.write_text(capsys.readouterr().out)
    return path


def test_export_then_verify(
    populated: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = public_key_file(populated, tmp_path, capsys)
    out = tmp_path / "export.jsonl"
    assert run(["ledger", "export", "--out", str(out)], populated) == 0
    assert "exported 8 records" in capsys.readouterr().err
    assert run(["ledger", "verify", str(out), "--public-key", str(pem)]) == 0
    assert "OK: 8 records" in capsys.readouterr().out


def test_verify_names_the_first_bad_record(
    populated: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = public_key_file(populated, tmp_path, capsys)
    out = tmp_path / "export.jsonl"
    run(["ledger", "export", "--out", str(out)], populated)
    lines = out.read_text().splitlines(keepends=True)
    record = json.loads(lines[2])
    record["usage"]["prompt_tokens"] = 1
    lines[2] = json.dumps(record) + "\n"
    out.write_text("".join(lines))
    capsys.readouterr()
    assert run(["ledger", "verify", str(out), "--public-key", str(pem)]) == 1
    message = capsys.readouterr().out
    assert "FAILED at line 3" in message and "seq 2" in message and "bad_signature" in message


def test_tenant_export_verifies_with_allow_gaps(
    populated: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = public_key_file(populated, tmp_path, capsys)
    out = tmp_path / "acme.jsonl"
    assert (
        run(
            [
                "ledger",
                "export",
                "--out",
                str(out),
                "--tenant",
                "acme",
                "--since",
                "2025-06-15T15:06:41Z",
                "--until",
                "1750000007",
            ],
            populated,
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 3  # seqs 2, 4, 6
    assert run(["ledger", "verify", str(out), "--public-key", str(pem)]) == 1
    assert "gap" in capsys.readouterr().out
    assert run(["ledger", "verify", str(out), "--public-key", str(pem), "--allow-gaps"]) == 0
    assert "OK: 3 records" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["csv", "cloudevents"])
def test_other_formats(
    populated: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    out = tmp_path / f"export.{fmt}"
    assert run(["ledger", "export", "--out", str(out), "--format", fmt], populated) == 0
    assert len(out.read_text().splitlines()) == (9 if fmt == "csv" else 8)
    assert not list(tmp_path.glob("*.partial"))


def test_public_key_jwks_and_rotation(
    populated: StubConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["ledger", "public-key", "--jwks"], populated) == 0
    before = json.loads(capsys.readouterr().out)["keys"]
    assert run(["ledger", "rotate-key"], populated) == 0
    capsys.readouterr()
    assert run(["ledger", "public-key", "--jwks"], populated) == 0
    after = json.loads(capsys.readouterr().out)["keys"]
    assert len(after) == 2 and after[1] == before[0]
    assert PublicKey.from_jwk(after[0]).key_id == after[0]["kid"] != before[0]["kid"]


def test_usage_errors_exit_2(
    populated: StubConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = public_key_file(populated, tmp_path, capsys)
    assert run(["ledger", "verify", str(tmp_path / "missing.jsonl"), "--public-key", str(pem)]) == 2
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("nope")
    assert run(["ledger", "verify", str(pem), "--public-key", str(bad_key)]) == 2
    with pytest.raises(SystemExit) as exited:
        run(["ledger", "export", "--out", "x", "--since", "yesterday"], populated)
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        run(["ledger", "verify", str(pem)])  # --public-key is required
    assert exited.value.code == 2


def test_export_without_a_ledger_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ledger", "export", "--out", str(tmp_path / "x")], StubConfig(tmp_path)) == 1
    assert "no ledger" in capsys.readouterr().err


def test_export_to_stdout(populated: StubConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ledger", "export", "--out", "-", "--tenant", "globex"], populated) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
