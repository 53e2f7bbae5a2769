"""The YAML configuration, validated at the edge with errors that name the bad key."""

from __future__ import annotations

import os
from dataclasses import fields as dc_fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from fairgate.scheduler import ConfigError as SchedulerConfigError
from fairgate.scheduler import Policy, RouterKind, SchedulerConfig

CONFIG_ENV = "FAIRGATE_CONFIG"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class Budget(_Strict):
    """Spend per calendar period (UTC), in the ledger's price units (``models[].prices``)."""

    amount: Decimal = Field(gt=0)
    period: Literal["hour", "day", "month"] = "day"


class TenantLimits(_Strict):
    """Each limit is optional; they hold across gateways that share a PostgreSQL ledger."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    budget: Budget | None = None
    max_tokens: int | None = Field(default=None, ge=1)  # ceiling on a request's max_tokens


class PromptGuard(_Strict):
    """Refuse prompts whose characters per token fall below natural text (encodings, ciphers)."""

    min_chars_per_token: float = Field(gt=0)


class TenantConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    weight: float = Field(default=1.0, gt=0)
    api_keys: list[str] = Field(default_factory=list)
    limits: TenantLimits | None = None
    max_reasoning_tokens: int | None = Field(default=None, ge=0)
    prompt_guard: PromptGuard | None = None


class Prices(_Strict):
    """Prices per million tokens. Cached prompt tokens default to the prompt price and
    reasoning tokens to the completion price."""

    prompt: Decimal = Field(ge=0)
    completion: Decimal = Field(ge=0)
    cached_prompt: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)
    currency: str = Field(default="USD", min_length=1)


class SimConfig(_Strict):
    """The simulated engine: deterministic text, no model."""

    reasoning_tokens: int = Field(default=8, ge=0)
    content_tokens: int = Field(default=12, ge=0)
    seconds_per_token: float = Field(default=0.0, ge=0)
    seconds_per_prompt_token: float = Field(default=0.0, ge=0)
    cache_tokens: int = Field(default=100_000, ge=0)
    # Capacity (replicas.engine_model): batch slots, step growth per sequence, prefill chunk.
    max_num_seqs: int = Field(default=256, ge=1)
    seconds_per_seq: float = Field(default=0.0, ge=0)
    prefill_chunk: int = Field(default=512, ge=1)


class Resources(_Strict):
    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    provider: Literal["vllm", "openai", "sim"] = "vllm"
    endpoints: list[str] = Field(default_factory=list)
    upstream_model: str | None = None
    api_key: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    reasoning: Literal["hidden", "visible"] = "hidden"
    reasoning_parser: str | None = None
    reasoning_start: str = "<think>"
    reasoning_end: str = "</think>"
    max_model_len: int | None = Field(default=None, gt=0)
    replicas: int = Field(default=1, ge=0)
    engine_args: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    prices: Prices | None = None
    sim: SimConfig = Field(default_factory=SimConfig)

    @model_validator(mode="after")
    def _endpoints_for_openai(self) -> ModelConfig:
        if self.provider == "openai" and not self.endpoints:
            raise ValueError("provider 'openai' needs at least one entry in 'endpoints'")
        return self

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in urls]


def _scheduler_fields() -> dict[str, Any]:
    """Every field of the scheduler's own ``SchedulerConfig``, with its type and default, so
    the YAML section cannot forget one; ``policy`` and ``router`` as their allowed values."""
    hints = get_type_hints(SchedulerConfig)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], f.default) for f in dc_fields(SchedulerConfig)
    }
    fields["policy"] = (Literal.__getitem__(tuple(p.value for p in Policy)), Policy.DLPM.value)
    fields["router"] = (
        Literal.__getitem__(tuple(r.value for r in RouterKind)),
        RouterKind.D2LPM.value,
    )
    return fields


_SchedulerFields: Any = create_model("_SchedulerFields", __base__=_Strict, **_scheduler_fields())

# Names before 2026-12-01: the "max" in-flight limit was only where adaptive admission started.
_RENAMED = {
    "max_inflight_per_replica": "inflight_initial",
    "max_inflight_ceiling": "inflight_ceiling",
}


class SchedulerSection(_SchedulerFields):  # type: ignore[misc]
    """``scheduler:``: the fields of ``scheduler.SchedulerConfig`` (checked by it), plus
    whether the gateway adapts each replica's in-flight limit (between ``inflight_floor``
    and ``inflight_ceiling``, from ``inflight_initial``) from its engine's running/waiting."""

    adaptive_inflight: bool = True

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for old, new in _RENAMED.items():
                if old in data:
                    if new in data:
                        raise ValueError(f"{old} is the old name of {new}; give only {new}")
                    data[new] = data.pop(old)
            # A configured initial limit above the default ceiling raises the ceiling with it.
            initial = data.get("inflight_initial")
            if isinstance(initial, int) and "inflight_ceiling" not in data:
                data["inflight_ceiling"] = max(initial, SchedulerConfig().inflight_ceiling)
        return data

    @model_validator(mode="after")
    def _checked(self) -> SchedulerSection:
        try:
            self.to_scheduler_config()
        except SchedulerConfigError as error:
            raise ValueError(str(error)) from None
        return self

    def to_scheduler_config(self) -> SchedulerConfig:
        values = self.model_dump(exclude={"adaptive_inflight"})
        return SchedulerConfig(**values)


class LedgerSection(_Strict):
    url: str | None = None
    # SQLite: "commit" fsyncs before each receipt; "background" fsyncs right after (README)
    sync: Literal["commit", "background"] = "commit"
    block_size: int = Field(default=16, ge=1)
    signing_key: Path | None = None  # PEM file, e.g. a mounted Kubernetes Secret


class AuditSection(_Strict):
    # Embedding fingerprints (commitment protocol 2): "auto" uses them when fairgate[audit] is
    # installed, "on" refuses to start without them, "off" commits protocol 1.
    embeddings: Literal["auto", "on", "off"] = "auto"
    full_openings: list[str] = Field(default_factory=list)  # tenants consenting to text openings
    challenges_per_minute: int = Field(default=120, ge=1)  # per audit key


class RaySection(_Strict):
    address: str | None = None
    # On a cluster: leave the replica actors running when the gateway exits, for the next
    # gateway to adopt by name (rolling upgrades, several gateways sharing the replicas).
    keep_replicas: bool = False


class GuardsSection(_Strict):
    """Gateway-wide request guards; ``None`` turns a timeout off."""

    queue_timeout_s: float | None = Field(default=300.0, gt=0)  # waiting for a replica slot
    stall_timeout_s: float | None = Field(default=120.0, gt=0)  # between two upstream events
    # A stream whose client has seen nothing this long (hidden reasoning, a retry waiting for a
    # slot) gets an SSE comment line, so that idle timeouts on the way do not cut it.
    keepalive_s: float | None = Field(default=15.0, gt=0)


class Config(_Strict):
    listen: Listen = Field(default_factory=Listen)
    data_dir: Path = Path("./.fairgate")
    admin_key: str | None = None
    audit_key: str | None = None  # for POST /v1/audit/challenge; the admin key works too
    tenants: list[TenantConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    ledger: LedgerSection = Field(default_factory=LedgerSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    ray: RaySection = Field(default_factory=RaySection)
    guards: GuardsSection = Field(default_factory=GuardsSection)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (
            ("tenants", [t.name for t in self.tenants]),
            ("models", [m.name for m in self.models]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dupes)}")
        return self

    @property
    def ledger_url(self) -> str | None:
        return self.ledger.url

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load from ``path``, else ``$FAIRGATE_CONFIG``, else the embedded default."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        return parse_config({}, "default config")
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{file}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from None
    config = parse_config(data, str(file))
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (file.parent / config.data_dir).resolve()})
    return config
