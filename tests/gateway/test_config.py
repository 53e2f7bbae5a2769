"""Configuration: the documented keys load; a bad key gets one clear message and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fairgate.gateway.config import ConfigError, load_config, parse_config

DOCUMENTED = """
listen: {host: 127.0.0.1, port: 8000}
data_dir: ./.fairgate
admin_key: "admin"
tenants:
  - name: alice
    weight: 1.0
    api_keys: ["sk-alice-1"]
models:
  - name: tiny
    provider: openai
    endpoints: ["http://127.0.0.1:9001"]
    tokenizer: /path/or/hf-id
    reasoning: hidden
scheduler: {policy: dlpm, router: d2lpm}
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "fairgate.yaml"
    path.write_text(DOCUMENTED)
    config = load_config(path)
    assert config.tenants[0].api_keys == ["sk-alice-1"]
    assert config.models[0].endpoints == ["http://127.0.0.1:9001"]
    assert config.data_dir == (tmp_path / ".fairgate").resolve()
    assert config.scheduler.policy == "dlpm"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("listen: {port: 9123}\n")
    monkeypatch.setenv("FAIRGATE_CONFIG", str(path))
    assert load_config().listen.port == 9123


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"tenants": [{"name": "a", "wieght": 2}]}, "tenants.0.wieght: unknown key"),
        ({"tenants": [{"name": "a", "weight": -1}]}, "tenants.0.weight"),
        ({"models": [{"name": "m", "provider": "tgi"}]}, "models.0.provider"),
        ({"models": [{"name": "m", "provider": "openai"}]}, "endpoints"),
        ({"scheduler": {"policy": "random"}}, "scheduler.policy"),
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"tenants": [{"name": "a"}, {"name": "a"}]}, "duplicate tenants name(s): a"),
    ],
)
def test_bad_keys_are_named(data: dict, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert named in str(caught.value)


def test_cli_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"scheduler": {"polcy": "dlpm"}}))
    result = subprocess.run(
        [sys.executable, "-m", "fairgate.gateway.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "scheduler.polcy: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fairgate.gateway.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--config" in result.stdout and "FAIRGATE_CONFIG" in result.stdout
