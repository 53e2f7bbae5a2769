"""Errors the gateway answers with, always as OpenAI-shaped JSON.

    APIError                     {"error": {"message", "type", "param", "code"}}
    ├── InvalidRequest           400 invalid_request_error
    │   └── ContextTooLong       400 invalid_request_error / context_length_exceeded
    ├── Unauthorized             401 authentication_error / invalid_api_key
    ├── Forbidden                403 permission_error
    ├── ModelNotFound            404 invalid_request_error / model_not_found
    ├── RecordNotFound           404 invalid_request_error / record_not_found (audits)
    ├── PayloadTooLarge          413 invalid_request_error
    ├── RateLimited              429 rate_limit_error (with Retry-After)
    ├── UpstreamError            502 api_error (the engine failed mid-request)
    └── Unavailable              503 api_error (no healthy replica)
        └── LedgerUnavailable    503 api_error / ledger_unavailable (records cannot be written)

This module is the only place that produces the error JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from fairgate.metering.record import Status


class APIError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None
    ledger_status: str = Status.ERROR

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            self.body(), status_code=self.status, headers={**self.headers, **(headers or {})}
        )


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    ledger_status = Status.INVALID_REQUEST


class ContextTooLong(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(APIError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    ledger_status = Status.UNAUTHORIZED


class Forbidden(APIError):
    status = 403
    type = "permission_error"
    ledger_status = Status.FORBIDDEN


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    ledger_status = Status.MODEL_NOT_FOUND


class RecordNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "record_not_found"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"
    ledger_status = Status.INVALID_REQUEST


class RateLimited(APIError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    ledger_status = Status.RATE_LIMITED


class UpstreamError(APIError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    ledger_status = Status.UPSTREAM_ERROR


class Unavailable(APIError):
    status = 503
    type = "api_error"
    code = "no_healthy_replica"
    ledger_status = Status.UNAVAILABLE


class LedgerUnavailable(Unavailable):
    code = "ledger_unavailable"


def invalid_request(error: ValidationError) -> InvalidRequest:
    """The first problem pydantic found, as OpenAI words it."""
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = f"Invalid value for '{param}': {first['msg']}" if param else first["msg"]
    if first["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    return InvalidRequest(message, param=param)


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
