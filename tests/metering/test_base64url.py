from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairgate.metering.base64url import b64url, b64url_decode


@given(st.binary(max_size=200))
def test_round_trip_without_padding(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["ab+c", "ab/c", "ab==", "ab c", "a$bc", "abc\n", "a"])
def test_decoding_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(text)
