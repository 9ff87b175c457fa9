"""Answers Tornado makes itself, before any handler, in Go's words (web/stream.py)."""

import pytest

from tests.httpclient import raw_request
from token_exchange.web.stream import BAD_REQUEST, HEADERS_TOO_LARGE

# Tornado's default max_header_size: the request line and headers together.
MAX_HEAD_BYTES = 64 * 1024


def test_answers_are_go_bytes():
    assert HEADERS_TOO_LARGE == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n431 Request Header Fields Too Large"
    )
    assert BAD_REQUEST == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        b"400 Bad Request"
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * (MAX_HEAD_BYTES // 10) + b"\r\n",
        b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["one large header", "many headers", "long URI"],
)
def test_a_head_larger_than_the_bound_is_answered_431(service, head):
    assert raw_request(service.port, head) == HEADERS_TOO_LARGE


def test_a_head_within_the_bound_is_served(service):
    head = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n\r\n"
    )
    assert raw_request(service.port, head).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v0/token/integration HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"GET /health HTTP/1.1\r\n\r\n",  # no Host
    ],
    ids=["request line", "Content-Length", "two Content-Lengths", "no Host"],
)
def test_a_malformed_request_is_answered_400_as_go_answers_it(service, request_bytes):
    assert raw_request(service.port, request_bytes) == BAD_REQUEST


def test_a_long_chunk_size_line_is_a_bad_request_not_a_large_head(service):
    # A body's chunk-size line has its own bound; running past it is not about the head.
    answer = raw_request(
        service.port,
        b"POST /v0/token/integration HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 200 + b"\r\n",
    )
    assert not answer.startswith(b"HTTP/1.1 431")
