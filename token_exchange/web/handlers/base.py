"""What every handler shares: allowed methods, default headers, in-flight counting, error answers."""

import logging

from tornado.web import HTTPError, RequestHandler

from token_exchange.web import errors

log = logging.getLogger("token_exchange.handlers")


class BaseHandler(RequestHandler):
    ALLOWED_METHODS: tuple[str, ...] = ("GET", "HEAD")
    # Names the request in log lines about it ("integration key refused: ...").
    KIND = "request"

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        # Shutdown waits for the requests in flight (web.inflight); the server counted this one from its
        # headers (connections.CountedRequest), and it stays in flight until this handler has answered.
        self._in_flight = application.settings["in_flight"]
        self._in_flight.started(request.connection)

    def set_default_headers(self):
        # As Go's service: no Server header; X-Content-Type-Options only on errors (write_error).
        self.clear_header("Server")
        self.set_header("Content-Type", errors.TEXT_PLAIN)

    def compute_etag(self):
        return None  # no ETag, as Go's service sends none (the JWKS handler makes its own)

    def prepare(self):
        if self.request.method not in self.ALLOWED_METHODS:
            raise errors.MethodNotAllowed(self.ALLOWED_METHODS)

    def logged_path(self):
        """The path as log lines show it: one of the service's routes (the query string may hold a key)."""
        return self.request.path

    def on_finish(self):
        self._count_finished()

    def on_connection_close(self):
        super().on_connection_close()
        self._count_finished()

    def _count_finished(self):
        # Both on_finish and on_connection_close may come for one request: end it once, before the
        # connection can carry the next one.
        if self._in_flight is not None:
            self._in_flight.finished(self.request.connection)
            self._in_flight = None

    def write_error(self, status_code, **kwargs):
        """The contract's answer for the exception that ended the request (errors.ANSWERS)."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405 and not isinstance(error, errors.MethodNotAllowed):
            # Tornado refuses methods it does not know before prepare() runs.
            error = errors.MethodNotAllowed(self.ALLOWED_METHODS)
        answer = errors.answer_for(error)
        if answer is None:
            body = errors.generic_body(status_code)
        else:
            self.set_status(answer.status)
            body = answer.body
        for name, value in errors.headers_for(error).items():
            self.set_header(name, value)
        self.set_header("Content-Type", errors.TEXT_PLAIN)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(body)

    def log_exception(self, typ, value, tb):
        """Log an exception as errors.ANSWERS says; one it does not name, with its traceback."""
        answer = errors.answer_for(value)
        if answer is None:
            if isinstance(value, HTTPError):
                return  # an answer Tornado chose (404, a bad request): the access line has it
            answer = errors.UNEXPECTED
        if answer.log is None:
            return
        # The path only: a query string may hold a key.
        message = answer.log.format(kind=self.KIND, path=self.logged_path(), method=self.request.method, error=value)
        log.log(answer.log_level, "%s", message, exc_info=(typ, value, tb) if answer.traceback else None)


# What log lines show of a path that is none of the service's routes.
UNKNOWN_PATH = "(unknown-path)"


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise HTTPError(404)

    def logged_path(self):
        # Not one of ours, so anything a client sent: a key pasted into the URL included.
        return UNKNOWN_PATH
