"""The Tornado application: routes, and the dependencies each handler gets."""

import tornado.web
from tornado.routing import Rule

from token_exchange.web.handlers.autojoin import AutojoinHandler
from token_exchange.web.handlers.base import DeclaredBodyFits, NotFoundHandler, streamed_handler
from token_exchange.web.handlers.health import HealthHandler
from token_exchange.web.handlers.integration import IntegrationHandler
from token_exchange.web.handlers.jwks import JWKSHandler, jwks_body
from token_exchange.web.handlers.ready import ReadyHandler
from token_exchange.web.inflight import RequestsInFlight
from token_exchange.web.accesslog import DEFAULT_ACCESS_LOG, RequestLog
from token_exchange.signing.signbatch import SignBatch


def make_app(verifier, issuer, public_jwks, readiness_probe=None, metrics=None, in_flight=None,
             access_log=DEFAULT_ACCESS_LOG):
    """readiness_probe: an async callable raising StoreUnavailable unless the store answers.
    in_flight: the RequestsInFlight that shutdown waits on (a new one if None); the server counts
    requests in it from their headers (httpserver), the handlers until they have answered.
    access_log: which requests leave an access line (requestlog.ACCESS_LOG_CHOICES)."""
    if in_flight is None:
        in_flight = RequestsInFlight()
    token_deps = dict(verifier=verifier, issuer=issuer, sign_batch=SignBatch())
    routes = [
        # A body that declares a length that fits is read whole; any other streams in (see DeclaredBodyFits).
        # Rules are tried in order: the endpoint called before every speed test comes first.
        Rule(DeclaredBodyFits(r"/v0/token/integration"), IntegrationHandler, token_deps),
        (r"/v0/token/integration", streamed_handler(IntegrationHandler), token_deps),
        Rule(DeclaredBodyFits(r"/v0/token/autojoin"), AutojoinHandler, token_deps),
        (r"/v0/token/autojoin", streamed_handler(AutojoinHandler), token_deps),
        (r"/\.well-known/jwks\.json", JWKSHandler, dict(body=jwks_body(public_jwks))),
        (r"/health", HealthHandler),
    ]
    if readiness_probe is not None:
        routes.append((r"/ready", ReadyHandler, dict(probe=readiness_probe)))
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        log_function=RequestLog(metrics, access_log),
        metrics=metrics,
        in_flight=in_flight,
    )
