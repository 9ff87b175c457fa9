"""The Tornado application: routes, and the dependencies each handler gets."""

import logging

import tornado.web

from token_exchange.handlers.autojoin import AutojoinHandler
from token_exchange.handlers.base import NotFoundHandler
from token_exchange.handlers.health import HealthHandler
from token_exchange.handlers.integration import IntegrationHandler
from token_exchange.handlers.jwks import JWKSHandler, jwks_body
from token_exchange.handlers.ready import ReadyHandler

access_log = logging.getLogger("token_exchange.access")


def log_request(handler):
    """One access line per request, and its metrics.

    The path only: a query string may hold a key. Token handlers add the
    integration id and key id, or the organisation, when known.
    """
    request = handler.request
    status = handler.get_status()
    seconds = request.request_time()
    # Cloud Logging shows httpRequest as the request's summary line.
    http_request = {"requestMethod": request.method, "requestUrl": request.path, "status": status,
                    "latency": f"{seconds:.6f}s", "remoteIp": request.remote_ip}
    access_log.info("%s %s %d %.1fms %s", request.method, request.path, status, 1000.0 * seconds,
                    request.remote_ip, extra={"json_fields": {"httpRequest": http_request},
                                              "fields": getattr(handler, "access_fields", {})})
    metrics = handler.settings.get("metrics")
    if metrics is not None:
        metrics.observe_request(request.method, request.path, status, seconds)


def make_app(verifier, issuer, public_jwks, readiness_probe=None, metrics=None, in_flight=None):
    """readiness_probe: an async callable raising StoreUnavailable unless the store answers."""
    token_deps = dict(verifier=verifier, issuer=issuer)
    routes = [
        (r"/v0/token/autojoin", AutojoinHandler, token_deps),
        (r"/v0/token/integration", IntegrationHandler, token_deps),
        (r"/\.well-known/jwks\.json", JWKSHandler, dict(body=jwks_body(public_jwks))),
        (r"/health", HealthHandler),
    ]
    if readiness_probe is not None:
        routes.append((r"/ready", ReadyHandler, dict(probe=readiness_probe)))
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        metrics=metrics,
        in_flight=in_flight,
    )
