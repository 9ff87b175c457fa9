"""The Tornado application: routes, and the dependencies each handler gets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import tornado.web

from token_exchange.observability.logs import withhold_client_input
from token_exchange.verification.verifier import KeyVerifier
from token_exchange.web.accesslog import DEFAULT_ACCESS_LOG, RequestLog
from token_exchange.web.handlers.autojoin import AutojoinHandler
from token_exchange.web.handlers.base import NotFoundHandler
from token_exchange.web.handlers.health import HealthHandler
from token_exchange.web.handlers.integration import IntegrationHandler
from token_exchange.web.handlers.jwks import JWKSHandler
from token_exchange.web.handlers.ready import ReadyHandler
from token_exchange.web.inflight import RequestsInFlight
from token_exchange.web.signingkeys import SigningKeys

if TYPE_CHECKING:  # imported by the service only once PROMETHEUS_MULTIPROC_DIR is set (cli.workers)
    from token_exchange.observability.metrics import ServiceMetrics


def make_app(
    verifier: KeyVerifier,
    signing_keys: SigningKeys,
    *,
    in_flight: RequestsInFlight,
    metrics: Optional[ServiceMetrics] = None,
    access_log: str = DEFAULT_ACCESS_LOG,
    trusted_proxies: int = 0,
) -> tornado.web.Application:
    """verifier: a KeyVerifier; signing_keys: the SigningKeys whose issuer signs tokens and whose JWKS
    /.well-known/jwks.json serves (replaced together on reload).

    in_flight: the RequestsInFlight that shutdown waits on; the server (connections.ServiceHTTPServer)
    counts requests in it from their headers, the handlers until they have answered.
    metrics: a ServiceMetrics, or None; access_log: which requests leave an access line (accesslog).
    trusted_proxies: how many proxies in front of the service append to X-Forwarded-For (clientaddr).
    """
    withhold_client_input()  # Tornado's lines about malformed requests quote them
    token_deps = dict(verifier=verifier, signing_keys=signing_keys, trusted_proxies=trusted_proxies)
    routes: list = [
        (r"/v0/token/integration", IntegrationHandler, token_deps),
        (r"/v0/token/autojoin", AutojoinHandler, token_deps),
        (r"/\.well-known/jwks\.json", JWKSHandler, dict(signing_keys=signing_keys)),
        (r"/health", HealthHandler),
        (r"/ready", ReadyHandler, dict(verifier=verifier)),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        log_function=RequestLog(metrics, access_log),
        in_flight=in_flight,
    )
