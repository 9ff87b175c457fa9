"""The Tornado application: routes, and the dependencies each handler gets."""

import tornado.web

from token_exchange.web.accesslog import DEFAULT_ACCESS_LOG, RequestLog
from token_exchange.web.handlers.autojoin import AutojoinHandler
from token_exchange.web.handlers.base import NotFoundHandler
from token_exchange.web.handlers.health import HealthHandler
from token_exchange.web.handlers.integration import IntegrationHandler
from token_exchange.web.handlers.jwks import JWKSHandler, jwks_body
from token_exchange.web.handlers.ready import ReadyHandler


def make_app(verifier, issuer, public_jwks, *, in_flight, metrics=None, access_log=DEFAULT_ACCESS_LOG):
    """verifier: a KeyVerifier; issuer: a TokenIssuer; public_jwks: the JWKs /.well-known/jwks.json serves.

    in_flight: the RequestsInFlight that shutdown waits on; the server (connections.ServiceHTTPServer)
    counts requests in it from their headers, the handlers until they have answered.
    metrics: a ServiceMetrics, or None; access_log: which requests leave an access line (accesslog).
    """
    token_deps = dict(verifier=verifier, issuer=issuer)
    routes: list = [
        (r"/v0/token/integration", IntegrationHandler, token_deps),
        (r"/v0/token/autojoin", AutojoinHandler, token_deps),
        (r"/\.well-known/jwks\.json", JWKSHandler, dict(body=jwks_body(public_jwks))),
        (r"/health", HealthHandler),
        (r"/ready", ReadyHandler, dict(verifier=verifier)),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        log_function=RequestLog(metrics, access_log),
        in_flight=in_flight,
    )
