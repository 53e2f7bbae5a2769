"""The audit's input files: a receipt (file, inline, inside a response), a prompt, a tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgate.gateway.cli_audit_inputs import (
    AuditClientError,
    load_prompt,
    load_receipt,
    load_retokenizer,
    read_text,
)

RECEIPT = {
    "request_id": "req_1",
    "seq": 3,
    "root": "ab" * 32,
    "leaves": 12,
    "key_id": "k1",
    "signature": "c2ln",
}


def test_a_receipt_loads_inline_from_a_file_and_from_a_whole_response(tmp_path: Path) -> None:
    inline = load_receipt(json.dumps(RECEIPT))
    assert inline.request_id == "req_1" and inline.leaves == 12
    path = tmp_path / "response.json"
    path.write_text(json.dumps({"id": "x", "receipt": RECEIPT}), encoding="utf-8")
    assert load_receipt(str(path)) == inline


@pytest.mark.parametrize("source", ["{not json", '{"request_id": "r"}', "/no/such/receipt"])
def test_a_bad_receipt_is_a_client_error(source: str) -> None:
    with pytest.raises(AuditClientError):
        load_receipt(source)


def test_a_prompt_is_text_or_a_messages_array(tmp_path: Path) -> None:
    text = tmp_path / "prompt.txt"
    text.write_text("what is 2+2?", encoding="utf-8")
    assert load_prompt(str(text)) == "what is 2+2?"
    messages = tmp_path / "messages.json"
    parts = [{"type": "text", "text": "two"}, {"type": "image_url"}]
    body = [{"role": "system", "content": "be brief"}, {"role": "user", "content": parts}]
    messages.write_text(json.dumps(body), encoding="utf-8")
    assert load_prompt(str(messages)) == "be brief\n\ntwo "
    messages.write_text(json.dumps([{"role": "user"}]), encoding="utf-8")
    with pytest.raises(AuditClientError, match="content"):
        load_prompt(str(messages))


def test_missing_files_and_tokenizers_are_client_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditClientError, match="answer"):
        read_text(str(tmp_path / "none.txt"), "answer")
    with pytest.raises(AuditClientError, match="tokenizer"):
        load_retokenizer(str(tmp_path / "none"))
