"""Property-based tests: whatever a client sends, both token endpoints answer
one of the contract's responses, never a 5xx, and the service keeps serving.

The real service runs in-process on a real socket (conftest's start_service).
Hypothesis runs many examples inside one test call while function-scoped
fixtures are set up once per call: that is what we want here (one service,
its keys, many requests), so the health check against function-scoped
fixtures is suppressed on purpose.
"""

import http.client
import io
import json
import logging
import socket
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.consumer import verify_token
from tests.httpclient import Response, exchange, request
from tests.support import plain_id
from token_exchange.web.body import MAX_BODY_BYTES

ENDPOINTS = ("integration", "autojoin")
TEXT_PLAIN = "text/plain; charset=utf-8"
ERROR_BODIES = {
    400: b"Invalid request body\n",
    401: b"Invalid API key\n",
    413: b"Request body too large\n",
}
MiB = 1024 * 1024

FUZZ = settings(
    max_examples=150,  # per endpoint: 300 per property
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
FEW = settings(FUZZ, max_examples=25)  # examples that send up to a MiB each


# Strategies.

# Every code point, lone surrogates included: json.dumps sends them as "\ud800" escapes.
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=60)
LONG_TEXT = st.builds(
    lambda piece, count: piece * count, st.text(ANY_CHAR, min_size=1, max_size=3), st.integers(0, 25_000)
)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ANY_TEXT, children, max_size=5),
    max_leaves=25,
)
# A part of an integration key: anything, often with dots, often empty.
KEY_PART = st.text(ANY_CHAR, max_size=80) | st.text(st.sampled_from("ab.0_-"), max_size=80) | st.just("")


def encode_json(value, ascii_only):
    """JSON text as bytes; non-ASCII text sent raw, lone surrogates as invalid UTF-8."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def names_api_key(name):
    """Whether Go's decoder reads a field of this name as api_key: case-insensitively, under Unicode case
    folding (str.casefold() agrees with Go's simple folding for every name that could fold to api_key)."""
    return name.casefold() == "api_key"


def expected_status(value, body):
    """What the contract says a JSON body answers, given no valid key can be guessed. Invalid UTF-8 (a lone
    surrogate sent raw) only ever sits inside a string here, where it reads as U+FFFD."""
    if len(body) > MAX_BODY_BYTES:
        return 413
    if not isinstance(value, dict):
        return 400
    if any(names_api_key(name) and not isinstance(field, str) for name, field in value.items()):
        return 400
    return 401


# Helpers.


def post(service, endpoint, body):
    if len(body) > MAX_BODY_BYTES:
        # Answered 413 before it is all sent: http.client would stop at the broken pipe.
        return post_raw(service.base_url, f"/v0/token/{endpoint}", body)
    return request(service.base_url, "POST", f"/v0/token/{endpoint}", body)


def post_raw(base_url, path, body, chunk_size=None, method="POST", headers=b""):
    """POST over a raw socket, tolerating a server that answers before reading the whole body.

    http.client stops at a broken pipe without reading the answer already sent;
    a real client (curl, Go) reads it. chunk_size set: Transfer-Encoding chunked.
    """
    url = urllib.parse.urlsplit(base_url)
    if chunk_size is None:
        framing = b"Content-Length: %d\r\n" % len(body)
        payload = body
    else:
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = (
            b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + chunk_size]), body[i : i + chunk_size])
                for i in range(0, len(body), chunk_size)
            )
            + b"0\r\n\r\n"
        )
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%sConnection: close\r\n\r\n" % (
        method.encode(),
        path.encode(),
        url.netloc.encode(),
        framing,
        headers,
    )
    received = bytearray()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        try:
            sock.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed early; read what it sent
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data

    class Received:
        def makefile(self, *args, **kwargs):
            return io.BytesIO(bytes(received))

    # Raises RemoteDisconnected when the server closed without any response.
    response = http.client.HTTPResponse(Received())
    response.begin()
    return Response(response.status, response.headers, response.read())


def assert_contract_answer(response):
    """One of 200/400/401/413, each exactly as the contract words it."""
    assert response.status in (200, 400, 401, 413), (response.status, response.body[:200])
    if response.status == 200:
        assert response.headers["Content-Type"] == "application/json"
        assert list(json.loads(response.body)) == ["token"]
    else:
        assert response.body == ERROR_BODIES[response.status]
        assert response.headers["Content-Type"] == TEXT_PLAIN


def assert_error(response, status):
    assert response.status == status, (response.status, response.body[:200])
    assert_contract_answer(response)


class ErrorRecords(logging.Handler):
    """Collects ERROR records from every logger (tornado's and ours)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def server_errors():
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.records
    root.removeHandler(handler)


@pytest.fixture
def service(start_service):
    # Thousands of wrong secrets for one key: the per-key throttle (tested in
    # http/test_verifier.py) would answer 429 where these tests check the 401.
    return start_service(verifier_options=dict(max_failures_per_key=10**9))


@pytest.fixture
def fuzzed(service, server_errors):
    """The running service, checked to be healthy and error-free after each example."""

    class Fuzzed:
        base_url = service.base_url

        @staticmethod
        def still_fine():
            health = request(service.base_url, "GET", "/health")
            assert (health.status, health.body) == (200, b"ok")
            messages = [record.getMessage() for record in server_errors]
            assert not messages, messages

    return Fuzzed


@pytest.fixture
def keys(integration_key, autojoin_key):
    """A valid key of each kind (assert_keys_work shows they work)."""
    return {"integration": integration_key("acme", tier=1).api_key, "autojoin": autojoin_key("org").api_key}


def assert_keys_work(fuzzed, keys):
    for endpoint, api_key in keys.items():
        assert exchange(fuzzed.base_url, endpoint, api_key).status == 200


# Arbitrary bodies.


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(
    body=st.binary(max_size=3000)
    | st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from([b"{", b'{"api_key":', b'{"api_key":"', b"[", b'"', b"\xef\xbb\xbf{"]),
        st.binary(max_size=300),
    )
)
@example(body=b"")
@example(body=b"\x00")
@example(body=b'{"api_key": "\xed\xa0\x80"}')  # a surrogate encoded raw: not UTF-8
@example(body=b'{"api_key": "k", "api_key": 5}')
@example(body=b'{"api_key": Infinity}')
def test_any_bytes_body_gets_a_contract_answer(fuzzed, endpoint, body):
    response = post(fuzzed, endpoint, body)
    assert_contract_answer(response)
    assert response.status != 200
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(value=JSON_VALUES, ascii_only=st.booleans())
@example(value=[], ascii_only=True)
@example(value={}, ascii_only=True)
@example(value="\ud800", ascii_only=True)
@example(value={"\udfff": "\ud800"}, ascii_only=True)
def test_any_json_value_gets_its_contract_answer(fuzzed, endpoint, value, ascii_only):
    body = encode_json(value, ascii_only)
    assert_error(post(fuzzed, endpoint, body), expected_status(value, body))
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(api_key=JSON_VALUES, extra=st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=3), ascii_only=st.booleans())
@example(api_key=None, extra={}, ascii_only=True)
@example(api_key=0, extra={}, ascii_only=True)
@example(api_key=False, extra={}, ascii_only=True)
@example(api_key=["mlabk.cii_acme.ki_x.y"], extra={}, ascii_only=True)
@example(api_key={"api_key": "x"}, extra={}, ascii_only=True)
def test_api_key_of_any_json_type(fuzzed, endpoint, api_key, extra, ascii_only):
    value = {**extra, "api_key": api_key}
    body = encode_json(value, ascii_only)
    assert_error(post(fuzzed, endpoint, body), expected_status(value, body))
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(api_key=ANY_TEXT | LONG_TEXT, ascii_only=st.booleans())
@example(api_key="\ud800", ascii_only=True)
@example(api_key="\udc00\ud800", ascii_only=True)
@example(api_key="mlabk.cii_acme.ki_0.\ud83d", ascii_only=True)
@example(api_key="\x00", ascii_only=True)
@example(api_key="x" * 1500, ascii_only=True)
@example(api_key="x" * 1501, ascii_only=True)
@example(api_key="x" * (MAX_BODY_BYTES - len('{"api_key": ""}')), ascii_only=True)
@example(api_key="x" * (MAX_BODY_BYTES - len('{"api_key": ""}') + 1), ascii_only=True)
def test_any_text_api_key_is_refused(fuzzed, keys, endpoint, api_key, ascii_only):
    assume(api_key not in keys.values())
    value = {"api_key": api_key}
    body = encode_json(value, ascii_only)
    assert_error(post(fuzzed, endpoint, body), expected_status(value, body))
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(integration_id=KEY_PART, key_id=KEY_PART, secret=KEY_PART, ascii_only=st.booleans())
@example(integration_id="acme", key_id="0000000000000000", secret="x", ascii_only=True)
@example(integration_id="acme\x00", key_id="0", secret="x", ascii_only=True)
@example(integration_id="a" * 65, key_id="0", secret="x", ascii_only=True)
@example(integration_id="a", key_id="0" * 62, secret="x" * 129, ascii_only=True)
@example(integration_id="a.b", key_id="c.d", secret="e.f", ascii_only=True)
@example(integration_id="\ud800", key_id="\udc00", secret="\ud800", ascii_only=True)
def test_integration_shaped_keys_are_refused(fuzzed, keys, endpoint, integration_id, key_id, secret, ascii_only):
    api_key = f"mlabk.cii_{integration_id}.ki_{key_id}.{secret}"
    assume(api_key not in keys.values())
    body = encode_json({"api_key": api_key}, ascii_only)
    assert_error(post(fuzzed, endpoint, body), expected_status({"api_key": api_key}, body))
    fuzzed.still_fine()


# Mutations of valid keys.

MUTATION_CHARS = ANY_CHAR | st.sampled_from(".\x00 _-=+/AaZz09")


@st.composite
def mutations(draw, original):
    """The original text after one to four random edits; never the original itself."""
    text = list(original)
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(("replace", "insert", "delete", "truncate", "append", "swapcase")))
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        if operation == "replace" and text:
            text[at] = draw(MUTATION_CHARS)
        elif operation == "insert":
            text.insert(at, draw(MUTATION_CHARS))
        elif operation == "delete" and text:
            del text[at]
        elif operation == "truncate":
            text = text[:at]
        elif operation == "append":
            text += draw(st.text(MUTATION_CHARS, min_size=1, max_size=40))
        elif text:
            text[at] = text[at].swapcase()
    mutated = "".join(text)
    assume(mutated != original)
    return mutated


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FUZZ
@given(data=st.data())
def test_any_mutation_of_a_valid_key_is_refused(fuzzed, keys, endpoint, data):
    assert_keys_work(fuzzed, keys)
    mutated = data.draw(mutations(keys[endpoint]), label="mutated key")
    assert_error(exchange(fuzzed.base_url, endpoint, mutated), 401)
    fuzzed.still_fine()


@pytest.mark.parametrize("hash_scheme", ["bcrypt", "sha256"])
@FUZZ
@given(data=st.data())
def test_any_mutation_of_the_secret_is_refused(fuzzed, integration_key, hash_scheme, data):
    key = integration_key(f"acme-{hash_scheme}", hash_scheme=hash_scheme).api_key
    assert exchange(fuzzed.base_url, "integration", key).status == 200
    prefix, secret = key.rsplit(".", 1)
    wrong = data.draw(
        mutations(secret) | st.text(ANY_CHAR, max_size=150).filter(lambda s: s != secret), label="wrong secret"
    )
    assert_error(exchange(fuzzed.base_url, "integration", f"{prefix}.{wrong}"), 401)
    fuzzed.still_fine()


@pytest.mark.parametrize("hash_scheme", ["bcrypt", "sha256"])
@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s + "\x00",  # C-string truncation would ignore all after a NUL
        lambda s: s + "\x00anything",
        lambda s: s[:-1],
        lambda s: s + " ",
        lambda s: s.swapcase(),
        lambda s: s + "=",  # base64 padding
        lambda s: (s * 2)[:72],  # bcrypt reads 72 bytes
        lambda s: (s * 2)[:73],
        lambda s: s + "x" * 85,  # the longest secret the parser allows: 128 bytes
    ],
    ids=["nul", "nul-tail", "shorter", "space", "swapcase", "padding", "72-bytes", "73-bytes", "128-bytes"],
)
def test_known_secret_mutations_are_refused(fuzzed, integration_key, hash_scheme, mutate):
    key = integration_key(hash_scheme=hash_scheme).api_key
    prefix, secret = key.rsplit(".", 1)
    assert exchange(fuzzed.base_url, "integration", key).status == 200
    assert_error(exchange(fuzzed.base_url, "integration", f"{prefix}.{mutate(secret)}"), 401)
    fuzzed.still_fine()


# Deep nesting and size limits.

NESTING = [
    # (prefix, opener, closer, innermost): 400 whatever the depth.
    (b"", b"[", b"]", b"1"),
    (b'{"api_key":', b"[", b"]", b'"k"'),
    (b'{"api_key":', b'{"a":', b"}", b"1"),
    (b"", b'[{"api_key":', b"}]", b'"k"'),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@settings(FUZZ, max_examples=60)
@given(shape=st.sampled_from(NESTING), depth=st.integers(1, 120_000), closed=st.booleans())
@example(shape=NESTING[0], depth=100_000, closed=False)
@example(shape=NESTING[0], depth=MAX_BODY_BYTES, closed=False)
@example(shape=NESTING[0], depth=MAX_BODY_BYTES + 1, closed=False)
@example(shape=NESTING[1], depth=50_000, closed=True)
def test_deeply_nested_json_is_400_or_413(fuzzed, endpoint, shape, depth, closed):
    prefix, opener, closer, innermost = shape
    body = prefix + opener * depth + ((innermost + closer * depth + (b"}" if prefix else b"")) if closed else b"")
    response = post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", body)
    assert_error(response, 413 if len(body) > MAX_BODY_BYTES else 400)
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@settings(FUZZ, max_examples=60)
@given(depth=st.integers(1, MAX_BODY_BYTES // 6), closed=st.booleans())
def test_deeply_nested_object_without_key_is_400_or_401(fuzzed, endpoint, depth, closed):
    # {"a":{"a":...1}}: when the parser copes it is an object without api_key (401).
    body = b'{"a":' * depth + (b"1" + b"}" * depth if closed else b"")
    assert len(body) <= MAX_BODY_BYTES
    response = post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", body)
    assert_contract_answer(response)
    assert response.status in ((400, 401) if closed else (400,))
    fuzzed.still_fine()


def test_hundred_thousand_open_brackets_are_413(fuzzed):
    for endpoint in ENDPOINTS:
        assert_error(post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", b"[" * 100_000), 413)
        assert_error(post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", b"[" * 100_000, chunk_size=4096), 413)
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FEW
@given(
    size=st.integers(MAX_BODY_BYTES + 1, MiB),
    chunk_size=st.none() | st.integers(1000, 300_000),
    valid_key_inside=st.booleans(),
)
@example(size=MAX_BODY_BYTES + 1, chunk_size=None, valid_key_inside=True)
@example(size=MAX_BODY_BYTES + 1, chunk_size=MAX_BODY_BYTES, valid_key_inside=True)
@example(size=MiB, chunk_size=None, valid_key_inside=False)
@example(size=MiB, chunk_size=MiB, valid_key_inside=False)
def test_body_over_the_limit_is_413(fuzzed, keys, endpoint, size, chunk_size, valid_key_inside):
    # Padded with whitespace, the body is still a valid request: only its size is wrong.
    api_key = keys[endpoint] if valid_key_inside else "x"
    start = json.dumps({"api_key": api_key}).encode()
    body = start + b" " * (size - len(start))
    response = post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", body, chunk_size=chunk_size)
    assert_error(response, 413)
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("chunk_size", [None, 1000])
def test_body_of_exactly_the_limit_is_served(fuzzed, keys, endpoint, chunk_size):
    start = json.dumps({"api_key": keys[endpoint]}).encode()
    body = start + b" " * (MAX_BODY_BYTES - len(start))
    assert len(body) == MAX_BODY_BYTES
    response = post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", body, chunk_size=chunk_size)
    assert response.status == 200
    assert_contract_answer(response)
    assert_error(post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", body + b" ", chunk_size=chunk_size), 413)
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("length", ["\u00b2", "\u0663", "\uff15", "+2", "-2", "0x2", "2.0", "2 2", ""], ids=plain_id)
def test_a_malformed_content_length_is_400_never_an_error(fuzzed, endpoint, length):
    # "²" and other Unicode digits pass str.isdigit(); int() refuses "²". Tornado answers 400 itself.
    head = (
        f"POST /v0/token/{endpoint} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1", "replace")
    url = urllib.parse.urlsplit(fuzzed.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + b"{}")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
@pytest.mark.parametrize(
    "headers",
    [
        b"",
        b"Content-Type: application/json\r\n",
        b"Content-Type: text/plain; charset=latin-1\r\n",
        # Content types Tornado would parse as forms: the contract reads the JSON all the same.
        b"Content-Type: application/x-www-form-urlencoded\r\n",
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\n",
        b"Content-Type: multipart/form-data\r\n",
        b"Content-Type: multipart/form-data; boundary=xyz\r\n",
    ],
    ids=lambda headers: headers.decode().strip().replace("\r\n", " ") or "none",
)
def test_declared_and_chunked_bodies_get_the_same_answers(fuzzed, keys, endpoint, method, headers):
    # A body that declares its length is read whole, any other streams in: the answers must not differ.
    valid = json.dumps({"api_key": keys[endpoint]}).encode()
    for body in (valid, b'{"api_key": "wrong"}', b"[1, 2", b'{"api_key": "' + b"x" * MAX_BODY_BYTES + b'"}'):
        declared, chunked = (
            post_raw(
                fuzzed.base_url, f"/v0/token/{endpoint}", body, chunk_size=chunk_size, method=method, headers=headers
            )
            for chunk_size in (None, 1000)
        )
        if method == "POST" and body == valid:
            assert declared.status == 200, (declared.status, declared.body)
        assert declared.status == chunked.status
        assert declared.headers.get("Allow") == chunked.headers.get("Allow")
        if declared.status == 200:
            verify_token(fuzzed.base_url, declared.json()["token"], endpoint)
            verify_token(fuzzed.base_url, chunked.json()["token"], endpoint)
        else:
            assert declared.body == chunked.body
    fuzzed.still_fine()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_chunked_body_over_a_mebibyte_is_413(fuzzed, endpoint):
    # Past MAX_STREAMED_BYTES (1 MiB) Tornado itself refuses the body.
    response = post_raw(fuzzed.base_url, f"/v0/token/{endpoint}", b" " * (2 * MiB), chunk_size=64 * 1024)
    assert_error(response, 413)
    fuzzed.still_fine()


# Unknown fields are ignored (the README's request format), whatever they hold.


@FUZZ
@given(
    extra=st.dictionaries(ANY_TEXT.filter(lambda name: not names_api_key(name)), JSON_VALUES, min_size=1, max_size=4),
    ascii_only=st.booleans(),
)
def test_unknown_fields_beside_a_valid_key_are_ignored(fuzzed, keys, extra, ascii_only):
    body = json.dumps({**extra, "api_key": keys["integration"]}, ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"
    )
    response = post(fuzzed, "integration", body)
    # Raw surrogates are invalid UTF-8: inside the other fields' strings they read as U+FFFD, as in Go.
    assert response.status == 200, (response.status, response.body)
    fuzzed.still_fine()


@pytest.mark.parametrize(
    "extra",
    [
        b"1" * 5000,  # a valid JSON number; Python's int() refuses over 4300 digits
        b"-1." + b"1" * 5000 + b"e-99999",
    ],
    ids=["5000-digit-number", "5000-digit-float"],
)
def test_unknown_field_holding_a_huge_number_is_ignored(fuzzed, keys, extra):
    body = b'{"api_key": ' + json.dumps(keys["integration"]).encode() + b', "extra": ' + extra + b"}"
    response = post(fuzzed, "integration", body)
    assert response.status == 200, (response.status, response.body)
    fuzzed.still_fine()


@pytest.mark.parametrize(
    "extra",
    [
        b"[" * 2000 + b"]" * 2000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
    ],
    ids=["deep-list", "deep-object"],
)
def test_unknown_field_nested_past_the_parser_limit_is_400(fuzzed, keys, extra):
    # Documented deviation: Go's decoder allows 10000 levels, Python's about 1000.
    body = b'{"api_key": ' + json.dumps(keys["integration"]).encode() + b', "extra": ' + extra + b"}"
    assert len(body) <= MAX_BODY_BYTES
    assert_error(post(fuzzed, "integration", body), 400)
    fuzzed.still_fine()
