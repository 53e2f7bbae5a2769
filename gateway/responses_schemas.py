"""Responses API request bodies, validated at the HTTP edge, and their translation into chat.

Only what an open-model engine can honour is accepted; any other field is a 400 that names it,
so that a client never believes a setting (tools, reasoning effort, stored state) took effect.
The gateway stores no responses: ``previous_response_id`` and ``store: true`` are refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from fairgate.gateway.errors import InvalidRequest, invalid_request

SUPPORTED = (
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "metadata",
    "user",
)
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = ("input_text", "output_text")


class ResponsesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    input: Any
    instructions: str | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stream: StrictBool = False
    store: StrictBool | None = None
    metadata: Annotated[dict[str, str], Field(max_length=16)] | None = None
    user: str | None = None

    def chat_body(self) -> dict[str, Any]:
        """The chat completions body that asks the engine for this response."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(self.input, self.instructions),
            "stream": self.stream,
        }
        for name, value in (
            ("max_completion_tokens", self.max_output_tokens),
            ("temperature", self.temperature),
            ("top_p", self.top_p),
        ):
            if value is not None:
                body[name] = value
        return body


def parse(data: dict[str, Any]) -> ResponsesBody:
    unsupported = [name for name in data if name not in SUPPORTED]
    if unsupported:
        raise InvalidRequest(_unsupported_message(unsupported), param=unsupported[0])
    if data.get("store") is True:
        raise InvalidRequest(
            "Invalid value for 'store': fairgate does not store responses; "
            "send store=false or leave it out.",
            param="store",
        )
    try:
        return ResponsesBody.model_validate(data)
    except ValidationError as error:
        raise invalid_request(error) from None


def _unsupported_message(names: list[str]) -> str:
    quoted = ", ".join(f"'{name}'" for name in names)
    note = ""
    if "previous_response_id" in names:
        note = " fairgate does not store responses, so it cannot continue one."
    return (
        f"Unsupported parameter(s) for /v1/responses: {quoted}.{note} "
        f"Supported: {', '.join(SUPPORTED)}."
    )


def chat_messages(input_: Any, instructions: str | None) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": instructions}] if instructions else []
    if isinstance(input_, str):
        return [*messages, {"role": "user", "content": input_}]
    if not isinstance(input_, list) or not input_:
        raise InvalidRequest(
            "Invalid value for 'input': expected a string or a non-empty list of messages.",
            param="input",
        )
    return messages + [_message(item, f"input[{i}]") for i, item in enumerate(input_)]


def _message(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        message = f"Invalid value for '{where}': expected a message object."
        raise InvalidRequest(message, param=where)
    kind = item.get("type", "message")
    if kind != "message":
        raise InvalidRequest(
            f"Invalid value for '{where}.type': '{kind}' items are not supported; "
            "only messages are.",
            param=f"{where}.type",
        )
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"Invalid value for '{where}.role': expected one of {', '.join(ROLES)}.",
            param=f"{where}.role",
        )
    return {"role": ROLES[role], "content": _text(item.get("content"), f"{where}.content")}


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid value for '{where}': expected a string or a list of text parts.", param=where
        )
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(text, str):
            raise InvalidRequest(
                f"Invalid value for '{where}[{i}]': only text parts ({', '.join(TEXT_PARTS)}) "
                "are supported.",
                param=f"{where}[{i}]",
            )
        texts.append(text)
    return "".join(texts)
