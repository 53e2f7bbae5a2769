"""schemathesis against the gateway's own OpenAPI schema (served at /openapi.json), with the
request bodies it validates (the pydantic models of the chat, completions and Responses
endpoints) written into the operations that read a raw body. Every generated call: no 5xx,
no traceback. Bounded examples per operation, so it runs in CI in well under a minute."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel

from fairgate.gateway.responses_schemas import ResponsesBody
from fairgate.gateway.schemas import ChatBody, CompletionBody
from tests.fuzz.conftest import KEY, MODELS, assert_clean
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(120)
EXAMPLES = 30
BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatBody,
    "/v1/completions": CompletionBody,
    "/v1/responses": ResponsesBody,
}


def _with_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for path, model in BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        # Generated requests name a served model, so they reach the engine, not only a 404.
        schema.setdefault("properties", {})["model"] = {"type": "string", "enum": list(MODELS)}
        schema.setdefault("required", [])
        if "model" not in schema["required"]:
            schema["required"].append("model")
        spec["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return spec


def _operations(gateway: GatewayServer) -> list[Any]:
    spec = httpx.get(gateway.base_url + "/openapi.json", timeout=10).json()
    assert set(BODIES) <= set(spec["paths"]), "an endpoint is missing from the schema"
    schema = schemathesis.openapi.from_dict(_with_bodies(spec))
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_has_every_public_endpoint(gateway: GatewayServer) -> None:
    labels = {op.label for op in _operations(gateway)}
    assert {"POST /v1/chat/completions", "GET /v1/models", "GET /metrics"} <= labels


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_no_5xx_and_no_traceback_for_any_generated_call(
    gateway: GatewayServer, mode: schemathesis.GenerationMode
) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in _operations(gateway):
        if operation.path == "/admin/reload":
            continue  # reloading re-reads a config file this test server does not have
        _fuzz(gateway, operation, mode, statuses)
    assert sum(statuses.values()) >= 80, statuses
    answered = statuses[("POST /v1/chat/completions", 200)]
    if mode is schemathesis.GenerationMode.POSITIVE:  # valid bodies reach the engine
        assert answered > EXAMPLES // 3, statuses
    else:  # invalid ones are refused with a 4xx, never served
        assert statuses[("POST /v1/chat/completions", 400)] > 0, statuses


def _fuzz(
    gateway: GatewayServer,
    operation: Any,
    mode: schemathesis.GenerationMode,
    statuses: Counter[tuple[str, int]],
) -> None:
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(mode))
    def call(case: Any) -> None:
        response = case.call(base_url=gateway.base_url, headers=KEY, timeout=30)
        statuses[(operation.label, response.status_code)] += 1
        assert_clean(response.status_code, response.text, operation.label)

    try:
        call()
    except Unsatisfiable:  # a negative case needs a parameter or a body to break
        assert mode is schemathesis.GenerationMode.NEGATIVE and not len(operation.body), (
            operation.label
        )
