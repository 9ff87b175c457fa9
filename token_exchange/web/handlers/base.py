"""Shared behaviour of all handlers: error bodies, methods, JSON responses."""

import json
import logging
import re
import time

from tornado import httputil
from tornado.routing import PathMatches
from tornado.web import HTTPError, RequestHandler, stream_request_body

from token_exchange.web import errors

log = logging.getLogger("token_exchange.handlers")

# A token request is a short JSON object; 64 KiB is generous.
MAX_BODY_BYTES = 64 * 1024
# Tornado's own cap for a streamed body, raised so that it never answers a
# bare 400 before data_received() has sent our 413 and closed the connection.
MAX_STREAMED_BYTES = 1024 * 1024 * 1024


class HTTPDate:
    """The Date header's value (RFC 9110), formatted once a second instead of for every response."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._cached = (None, "")  # (second, its text), replaced whole: a thread never sees half of it

    def __call__(self):
        second = int(self._clock())
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, httputil.format_timestamp(second))
        return cached[1]


_http_date = HTTPDate()


class BaseHandler(RequestHandler):
    ALLOWED_METHODS = ("GET", "HEAD")

    def clear(self):
        # Tornado's clear(), less two costs every exchange paid for nothing: formatting the Date anew (a few
        # µs; it changes once a second) and a Server header naming Tornado, which Go's service does not send.
        self._headers = httputil.HTTPHeaders({"Content-Type": "text/html; charset=UTF-8", "Date": _http_date()})
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def set_default_headers(self):
        self.set_header("Content-Type", errors.TEXT_PLAIN)
        self.set_header("X-Content-Type-Options", "nosniff")

    # Shutdown waits for the requests counted here.
    _in_flight = None

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        # Counted from here, not from prepare(): the request's reading stops counting as this handler
        # is made (httpserver.ServedRequest), and prepare() comes a turn of the event loop later.
        self._in_flight = application.settings["in_flight"]  # make_app always gives one
        self._in_flight.started()

    def prepare(self):
        if self.request.method not in self.ALLOWED_METHODS:
            raise errors.method_not_allowed(self.ALLOWED_METHODS)

    def _untrack_in_flight(self):
        # Both on_finish and on_connection_close may come for one request: count it once.
        if self._in_flight:
            self._in_flight.finished()
            self._in_flight = False

    def on_finish(self):
        self._untrack_in_flight()

    def on_connection_close(self):
        super().on_connection_close()
        self._untrack_in_flight()

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405 and not isinstance(exc, errors.ApiError):
            # Tornado refuses methods it does not know before prepare() runs.
            exc = errors.method_not_allowed(self.ALLOWED_METHODS)
        if isinstance(exc, errors.ApiError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
            body = exc.body
        else:
            body = errors.generic_body(status_code)
        self.set_header("Content-Type", errors.TEXT_PLAIN)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(body)

    def log_exception(self, typ, value, tb):
        if isinstance(value, HTTPError):
            return  # an expected answer, already in the access log
        # The request repr Tornado would log holds the query string, which
        # may carry a key: name only the method and path.
        log.error("unexpected error in %s %s", self.request.method, self.request.path, exc_info=(typ, value, tb))


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise HTTPError(404)


class TokenHandler(BaseHandler):
    """Base of the two exchange endpoints: POST {"api_key": "..."}.

    A request comes here when it declares a body that fits (DeclaredBodyFits):
    Tornado has read all of it before the handler runs. Any other request
    goes to the variant streamed_handler() makes of the same class.
    """

    ALLOWED_METHODS = ("POST",)

    def set_default_headers(self):
        # None for every request: post() sets its Content-Type; write_error() sets Content-Type and
        # X-Content-Type-Options, as Go's http.Error does (a token, JSON for a backend, goes without).
        pass

    def initialize(self, verifier, issuer, sign_batch):
        self.verifier = verifier
        self.issuer = issuer
        self.sign_batch = sign_batch

    async def post(self):
        sign, claims = await self.exchange(self.api_key_from_body(self.request_body()))
        try:
            token = await self.sign_batch.submit(sign, *claims)
        except Exception:
            log.exception("signing failed for %s", self.request.path)
            raise errors.failed_to_generate_token() from None
        # A compact JWS is ASCII letters, digits, "-", "_" and ".": nothing to escape.
        self.set_header("Content-Type", "application/json")
        self.finish('{"token":"' + token + '"}\n')  # a 200 here counts as a token issued (metrics)

    def request_body(self):
        return self.request.body

    async def exchange(self, api_key):
        """Check api_key (errors.ApiError when refused); what to sign for it: (sign, sign's arguments).

        post() signs with the current batch (signbatch) and answers {"token": ...}, or 500 when signing fails.
        """
        raise NotImplementedError

    def api_key_from_body(self, raw):
        try:
            body = _BODY_DECODER.decode(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise errors.invalid_request_body() from None
        if not isinstance(body, dict):
            raise errors.invalid_request_body()
        api_key = body.get("api_key", "")
        if not isinstance(api_key, str):
            raise errors.invalid_request_body()
        return api_key


# Content-Length as RFC 9110 writes it: ASCII digits only (str.isdigit() also takes "²").
_DECIMAL = re.compile(r"[0-9]+")


def declared_body_length(headers):
    """The body length a request's headers declare, or None: no Content-Length, a malformed one, or chunked."""
    # get_list: one call into HTTPHeaders where get() takes two. A repeated Content-Length goes the streamed
    # way, where Tornado checks it.
    lengths = headers.get_list("Content-Length")
    if len(lengths) != 1 or "Transfer-Encoding" in headers or not _DECIMAL.fullmatch(lengths[0]):
        return None
    return int(lengths[0])


# Tornado parses a whole body of these types as a form before the handler
# runs, and answers 400 for some (a Content-Encoding, a missing boundary);
# the contract reads JSON whatever the Content-Type says, as Go's does.
_FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class DeclaredBodyFits(PathMatches):
    """Matches a path when the request declares a body of at most MAX_BODY_BYTES.

    Such a body is read whole before the handler runs, with no streaming
    machinery: one turn of the event loop less per exchange. The rest (no
    length, chunked, too long, malformed, or typed as a form, which Tornado
    would parse) is for the streamed variant, whose body Tornado leaves alone.
    """

    def __init__(self, path_pattern):
        super().__init__(path_pattern)
        if self.regex.groups:
            raise ValueError("a token endpoint's path has no groups to pass to its handler")

    def match(self, request):
        if self.regex.match(request.path) is None:  # the path first: it rules out most routes
            return None
        headers = request.headers
        length = declared_body_length(headers)
        if length is None or length > MAX_BODY_BYTES:
            return None
        content_types = headers.get_list("Content-Type")
        if content_types and content_types[0].startswith(_FORM_CONTENT_TYPES):
            return None
        return {}  # what PathMatches gives for a path without groups: no arguments for the handler


class _StreamedBody:
    """Reads a token request's body as it arrives, to answer 413 as soon as it grows too large."""

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self._body_chunks = []
        self._body_size = 0

    def prepare(self):
        super().prepare()
        length = declared_body_length(self.request.headers)
        if length is not None and length > MAX_BODY_BYTES:
            raise errors.request_body_too_large()
        self.request.connection.set_max_body_size(MAX_STREAMED_BYTES)

    def data_received(self, chunk):
        if self._finished:
            return
        self._body_size += len(chunk)
        if self._body_size <= MAX_BODY_BYTES:
            self._body_chunks.append(chunk)
            return
        # A body without Content-Length grew too large: answer now rather
        # than read the rest. Tornado closes the connection afterwards.
        self._body_chunks = []
        too_large = errors.request_body_too_large()
        self.send_error(too_large.status_code, exc_info=(type(too_large), too_large, None))

    async def post(self):
        if self._finished:  # answered 413 while the body streamed in
            return
        await super().post()

    def request_body(self):
        return b"".join(self._body_chunks)


def streamed_handler(token_handler_class):
    """The variant of a TokenHandler class for bodies of undeclared or excessive length."""
    return stream_request_body(type(f"Streamed{token_handler_class.__name__}", (_StreamedBody, token_handler_class),
                                    {"__doc__": token_handler_class.__doc__}))


class _JSONNumber:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# Numbers stay unconverted, as Go's decoder leaves them in ignored fields: a
# 5000-digit number beside the key must not fail parsing. Built once, as
# json.loads with options builds a decoder per call.
_BODY_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_JSONNumber, parse_float=_JSONNumber)
