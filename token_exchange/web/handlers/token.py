"""What the two token endpoints share: POST {"api_key": "..."}, read as it streams in, answered {"token": ...}."""

from typing import cast

from tornado.http1connection import HTTP1Connection
from tornado.web import Finish, stream_request_body

from token_exchange.verification.verifier import KeyVerifier
from token_exchange.web import errors
from token_exchange.web.body import MAX_BODY_BYTES, BodyTooLarge, api_key_from_body, declared_body_length
from token_exchange.web.clientaddr import client_address
from token_exchange.web.handlers.base import BaseHandler
from token_exchange.web.signingkeys import SigningKeys

# Tornado's own cap for a streamed body, raised so that it never answers a
# bare 400 before data_received() has sent our 413.
MAX_STREAMED_BYTES = 1024 * 1024 * 1024


@stream_request_body
class TokenHandler(BaseHandler):
    """Base of the exchange endpoints. The body streams in, so that one growing past MAX_BODY_BYTES is
    answered 413 as soon as it does, whether it declared its length or not."""

    ALLOWED_METHODS = ("POST",)

    def initialize(self, verifier: KeyVerifier, signing_keys: SigningKeys, trusted_proxies: int) -> None:
        """trusted_proxies: how many proxies in front of the service append to X-Forwarded-For (web.clientaddr)."""
        self.verifier = verifier
        self.signing_keys = signing_keys
        self.trusted_proxies = trusted_proxies
        self.access_fields: dict[str, str] = {}  # what the access line adds: ids, never a secret
        self._body = bytearray()
        self._too_large = False

    def set_default_headers(self):
        # A token (JSON for a backend) goes without X-Content-Type-Options; write_error() sets it on
        # errors, as Go's http.Error does.
        self.clear_header("Server")

    def prepare(self):
        headers = self.request.headers
        length = declared_body_length(headers)
        if self.request.method not in self.ALLOWED_METHODS:
            has_body = "Content-Length" in headers or "Transfer-Encoding" in headers
            if (length is None and has_body) or (length or 0) > MAX_BODY_BYTES:
                raise errors.MethodNotAllowed(self.ALLOWED_METHODS)  # not worth reading: refused at once
            # A short body or none: refused once it is read, by the method Tornado then calls (405), so
            # that the connection stays open for the next request, as Go's does.
        if length is not None and length > MAX_BODY_BYTES:
            raise BodyTooLarge()
        cast(HTTP1Connection, self.request.connection).set_max_body_size(MAX_STREAMED_BYTES)

    def data_received(self, chunk):
        if self._too_large:
            return
        self._body += chunk
        if len(self._body) > MAX_BODY_BYTES:
            # A body without Content-Length grew too large: answer now rather than read the rest.
            self._too_large = True
            self._body = bytearray()
            self.send_error(413, exc_info=(BodyTooLarge, BodyTooLarge(), None))

    def api_key(self):
        """The api_key of the request's body (web.body.api_key_from_body)."""
        if self._too_large:
            raise Finish()  # answered 413 while the body streamed in
        return api_key_from_body(bytes(self._body))

    def client(self):
        """The client the limits on bcrypt checks count this request against (web.clientaddr)."""
        peer = self.request.remote_ip or ""  # always set for a TCP connection
        return client_address(peer, self.request.headers.get("X-Forwarded-For", ""), self.trusted_proxies)

    def issuer(self):
        """The issuer in use now: a reload while the key was verified may have replaced the one of the
        request's start, whose key may no longer be published."""
        return self.signing_keys.current.issuer

    def send_token(self, token):
        # A compact JWS is ASCII letters, digits, "-", "_" and ".": nothing to escape.
        self.set_header("Content-Type", "application/json")
        self.finish('{"token":"' + token + '"}\n')
