"""The reasoning splitter: no reasoning byte is ever visible, and counts follow vLLM's rule
(tokens strictly between the markers are reasoning; the markers are withheld but not counted)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fairgate.metering.reasoning import Markers, Piece, ReasoningSplitter, _partial_suffix

START, END = 1024, 1025
BY_ID = Markers(start_id=START, end_id=END)
BY_TEXT = Markers()


def _lp(token: str, *alternatives: str) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": -0.1,
        "top_logprobs": [{"token": t, "logprob": -1.0} for t in (token, *alternatives)],
    }


def _run(splitter: ReasoningSplitter, steps: list[tuple]) -> list[Piece]:
    pieces = [splitter.step(*step[:3], **(step[3] if len(step) > 3 else {})) for step in steps]
    return [*pieces, splitter.flush()]


def _visible(pieces: list[Piece]) -> str:
    return "".join(p.visible_text for p in pieces)


def _hidden(pieces: list[Piece]) -> str:
    return "".join(p.hidden_text for p in pieces)


def test_one_token_per_chunk_with_an_engine_parser() -> None:
    """vLLM with --reasoning-parser: the markers come as empty deltas with their ids."""
    splitter = ReasoningSplitter(BY_ID)
    pieces = _run(
        splitter,
        [
            ("", [START], [_lp("<think>")], {"engine_reasoning": False}),
            ("Okay", [10], [_lp("Okay")], {"engine_reasoning": True}),
            (" so", [11], [_lp(" so")], {"engine_reasoning": True}),
            ("", [END], [_lp("</think>")]),
            ("The", [20], [_lp("The", "</think>")]),
            (" end", [21], [_lp(" end")]),
        ],
    )
    assert _visible(pieces) == "The end"
    assert _hidden(pieces) == "Okay so"
    assert sum(len(p.hidden_ids) for p in pieces) == 2
    assert sum(len(p.marker_ids) for p in pieces) == 2
    assert [i for p in pieces for i in p.visible_ids] == [20, 21]
    logprobs = [e for p in pieces for e in p.visible_logprobs]
    assert [e["token"] for e in logprobs] == ["The", " end"]
    assert all(alt["token"] != "</think>" for e in logprobs for alt in e["top_logprobs"])


def test_reasoning_chunk_that_ends_with_the_end_marker() -> None:
    """Several tokens per chunk: the end marker closes an engine-reasoning chunk, and the
    next content chunk is visible."""
    pieces = _run(
        ReasoningSplitter(BY_ID),
        [
            (" short.", [372, 17, END], [], {"engine_reasoning": True}),
            ("The", [604], []),
        ],
    )
    assert _visible(pieces) == "The"
    assert [i for p in pieces for i in p.visible_ids] == [604]
    assert sum(len(p.hidden_ids) for p in pieces) == 2


def test_one_chunk_across_the_end_of_the_reasoning() -> None:
    """Reasoning and content in one chunk, all ids with the content part."""
    pieces = _run(
        ReasoningSplitter(BY_ID, start_in_reasoning=True),
        [
            ("The answer", [17, END, 604, 605], [], {"reasoning_text": " short."}),
        ],
    )
    assert _visible(pieces) == "The answer"
    assert _hidden(pieces) == " short."
    assert [i for p in pieces for i in p.visible_ids] == [604, 605]
    assert [i for p in pieces for i in p.hidden_ids] == [17]


def test_in_band_markers_by_id_with_multi_token_chunks() -> None:
    """/v1/completions: no parser, the marker text is in the content."""
    pieces = _run(
        ReasoningSplitter(BY_ID),
        [
            ("<think>Let me", [START, 1, 2], []),
            (" see</think>", [3, END], []),
            ("Hi there", [4, 5], []),
        ],
    )
    assert _visible(pieces) == "Hi there"
    assert "<think>" not in _visible(pieces) and "see" in _hidden(pieces)
    assert sum(len(p.hidden_ids) for p in pieces) == 3


def test_a_prompt_ending_inside_the_reasoning_starts_hidden() -> None:
    splitter = ReasoningSplitter(BY_ID)
    splitter.open_from_prompt([1, 2, START])
    pieces = _run(splitter, [("secret", [7], []), ("", [END], []), ("shown", [8], [])])
    assert _visible(pieces) == "shown" and _hidden(pieces) == "secret"


chunks = st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40)


@given(chunks)
def test_text_mode_hides_every_reasoning_byte_however_chunked(sizes: list[int]) -> None:
    text = "pre <think>secret thoughts</think> post <b>"
    splitter = ReasoningSplitter(BY_TEXT)
    pieces, at = [], 0
    for size in sizes:
        if at >= len(text):
            break
        pieces.append(splitter.step(text[at : at + size], [at], []))
        at += size
    if at < len(text):
        pieces.append(splitter.step(text[at:], [at], []))
    pieces.append(splitter.flush())
    assert _visible(pieces) == "pre  post <b>"
    assert "secret thoughts" in _hidden(pieces)
    for piece in pieces:
        assert not piece.visible_ids or "secret" not in piece.visible_text


def _longest_partial(text: str, marker: str) -> int:
    sizes = range(min(len(marker) - 1, len(text)), 0, -1)
    return next((size for size in sizes if marker.startswith(text[-size:])), 0)


@given(st.text(alphabet="<>/thinkx", max_size=24), st.sampled_from(["<think>", "</think>", "<<a"]))
def test_partial_suffix_is_the_longest_proper_prefix_of_the_marker(text: str, marker: str) -> None:
    assert _partial_suffix(text, marker) == _longest_partial(text, marker)
