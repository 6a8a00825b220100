"""The event-stream parser."""

from __future__ import annotations

from mistralrs.sse import iter_sse_data


def lines(text: str) -> list[bytes]:
    return [line.encode() for line in text.splitlines(keepends=True)]


def test_one_data_string_per_event() -> None:
    assert list(iter_sse_data(lines('data: {"a":1}\n\ndata: [DONE]\n\n'))) == ['{"a":1}', "[DONE]"]


def test_crlf_comments_other_fields_and_multiline_data() -> None:
    text = ": keep-alive\r\n\r\nevent: message\r\nid: 3\r\ndata: one\r\ndata:two\r\n\r\n"
    assert list(iter_sse_data(lines(text))) == ["one\ntwo"]


def test_an_event_cut_before_its_blank_line_is_still_delivered() -> None:
    assert list(iter_sse_data(lines("data: a\n\ndata: b"))) == ["a", "b"]


def test_utf8_split_is_not_an_issue_per_line() -> None:
    assert list(iter_sse_data(["data: héllo ✓\n".encode(), b"\n"])) == ["héllo ✓"]
