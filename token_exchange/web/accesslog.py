"""What happens when a request finishes: its access line and its metrics.

Which requests leave an access line is the operator's choice (-access-log):
all of them, those answered 4xx or 5xx (the default: Cloud Run already logs
every request, and at thousands of exchanges a second a line for each
success is a large log bill that says little), or none. Metrics count
every request whatever the choice.
"""

import logging

ACCESS_LOGGER = "token_exchange.access"

# -access-log: which requests leave an access line, by the lowest status logged.
ACCESS_LOG_ALL = "all"
ACCESS_LOG_ERRORS = "errors"
ACCESS_LOG_OFF = "off"
_LOWEST_STATUS_LOGGED = {ACCESS_LOG_ALL: 0, ACCESS_LOG_ERRORS: 400, ACCESS_LOG_OFF: None}
ACCESS_LOG_CHOICES = tuple(_LOWEST_STATUS_LOGGED)
DEFAULT_ACCESS_LOG = ACCESS_LOG_ERRORS
# What the access line shows of a method the service does not know.
OTHER_METHOD = "(other-method)"


class RequestLog:
    """Tornado's log_function: a request's access line, if -access-log asks for it, and its metrics.

    The path only (handlers.base.BaseHandler.logged_path): a query string
    may hold a key, and so may a path that is none of the routes, which is
    logged as "(unknown-path)". Token handlers add the integration id and
    key id, or the organisation, as access_fields.
    """

    def __init__(self, metrics=None, access_log=DEFAULT_ACCESS_LOG, logger=None):
        """access_log: one of ACCESS_LOG_CHOICES."""
        self._lowest_status_logged = _LOWEST_STATUS_LOGGED[access_log]
        self._metrics = metrics
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)

    def __call__(self, handler):
        request = handler.request
        status = handler.get_status()
        seconds = request.request_time()
        lowest = self._lowest_status_logged
        if lowest is not None and status >= lowest:
            path = handler.logged_path()
            # A method is any token a client sends, a key included: only the ones Tornado serves are named.
            method = request.method if request.method in handler.SUPPORTED_METHODS else OTHER_METHOD
            # Cloud Logging shows httpRequest as the request's summary line.
            http_request = {
                "requestMethod": method,
                "requestUrl": path,
                "status": status,
                "latency": f"{seconds:.6f}s",
                "remoteIp": request.remote_ip,
            }
            self._logger.info(
                "%s %s %d %.1fms %s",
                method,
                path,
                status,
                1000.0 * seconds,
                request.remote_ip,
                extra={"json_fields": {"httpRequest": http_request}, "fields": getattr(handler, "access_fields", {})},
            )
        if self._metrics is not None:
            self._metrics.observe_request(request.method, request.path, status, seconds)
