"""One canonical byte form for everything signed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairgate.metering.canonical import canonical_json
from fairgate.metering.errors import CanonicalJSONError


def test_sorted_keys_no_whitespace_utf8() -> None:
    value = {"b": [1, {"z": None, "a": True}], "a": "é ✓ 𝄞", "c": -3}
    assert canonical_json(value) == '{"a":"é ✓ 𝄞","b":[1,{"a":true,"z":null}],"c":-3}'.encode()


def test_escapes_only_what_json_requires() -> None:
    assert canonical_json({"k": 'q"\\\n\x01'}) == b'{"k":"q\\"\\\\\\n\\u0001"}'


@pytest.mark.parametrize(
    "bad", [1.5, {"x": 0.0}, [float("nan")], {1: "int key"}, {"s": {1, 2}}, b"bytes", "\ud800"]
)
def test_rejects_values_without_a_canonical_form(bad: object) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(bad)


def test_error_names_the_path() -> None:
    with pytest.raises(CanonicalJSONError, match=r"\$\.usage\.tokens\[1\]"):
        canonical_json({"usage": {"tokens": [1, 2.5]}})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_property_key_order_does_not_matter(value: object) -> None:
    import json

    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded
    if isinstance(value, dict):
        reversed_dict = dict(reversed(list(value.items())))
        assert canonical_json(reversed_dict) == encoded
