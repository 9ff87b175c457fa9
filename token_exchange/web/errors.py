"""Every error answer the service sends, and the one table that maps an exception to its answer.

The layers below raise their own exceptions (a refused key, a store that
does not answer, a body that is not JSON); BaseHandler.write_error looks
the exception up in ANSWERS and sends the contract's plain-text body, and
BaseHandler.log_exception logs it at the level the table gives. Bodies
match the Go service byte for byte.
"""

import logging
from dataclasses import dataclass
from typing import Optional

from tornado.web import HTTPError

from token_exchange.signing.tokens import SigningFailed
from token_exchange.store import StoreUnavailable
from token_exchange.verification.verifier import InvalidKey, Overloaded, Refused, Throttled
from token_exchange.web.body import BodyTooLarge, InvalidBody

TEXT_PLAIN = "text/plain; charset=utf-8"
STORE_RETRY_AFTER_SECONDS = 1


class MethodNotAllowed(HTTPError):
    def __init__(self, allowed_methods):
        super().__init__(405)
        self.allowed_methods = allowed_methods


@dataclass(frozen=True)
class Answer:
    """What the client gets for an exception, and what the log says of it.

    log: the message, formatted with the handler's KIND, the request path and the exception
    (which never holds a secret); None logs nothing beyond the access line.
    """

    status: int
    body: str
    log_level: int = logging.INFO
    log: Optional[str] = None
    traceback: bool = False


ANSWERS = {
    InvalidBody: Answer(400, "Invalid request body\n"),
    InvalidKey: Answer(401, "Invalid API key\n", logging.INFO, "{kind} key refused: {error}"),
    BodyTooLarge: Answer(413, "Request body too large\n"),
    Throttled: Answer(
        429, "Too many attempts for this key, retry later\n", logging.WARNING, "{kind} key check throttled: {error}"
    ),
    Overloaded: Answer(
        503, "Too many key verifications pending, retry later\n", logging.WARNING, "{kind} key check refused: {error}"
    ),
    StoreUnavailable: Answer(
        503, "Key store unavailable, retry later\n", logging.ERROR, "key store unavailable ({kind}): {error}"
    ),
    SigningFailed: Answer(
        500, "Failed to generate token\n", logging.ERROR, "signing failed for {path}", traceback=True
    ),
    MethodNotAllowed: Answer(405, "Method Not Allowed\n"),  # Go's mux says it so
}

# Errors Tornado answers itself (an unknown path, a malformed request), and anything unexpected.
GENERIC_BODIES = {
    400: "Bad request\n",
    404: "404 page not found\n",
    500: "Internal server error\n",
}
UNEXPECTED = Answer(500, GENERIC_BODIES[500], logging.ERROR, "unexpected error in {method} {path}", traceback=True)


def answer_for(error):
    """The Answer for an exception: the table's entry for its class or the nearest base, else None."""
    for cls in type(error).__mro__:
        answer = ANSWERS.get(cls)
        if answer is not None:
            return answer
    return None


def headers_for(error):
    """Headers an answer carries beside its body."""
    if isinstance(error, Refused):
        return {"Retry-After": str(error.retry_after_seconds)}
    if isinstance(error, StoreUnavailable):
        return {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
    if isinstance(error, MethodNotAllowed):
        return {"Allow": ", ".join(error.allowed_methods)}
    return {}


def generic_body(status_code):
    return GENERIC_BODIES.get(status_code, f"HTTP error {status_code}\n")
