"""The Tornado application: routes, and the dependencies each handler gets."""

import logging

import tornado.web

from token_exchange.handlers.autojoin import AutojoinHandler
from token_exchange.handlers.base import NotFoundHandler
from token_exchange.handlers.health import HealthHandler
from token_exchange.handlers.integration import IntegrationHandler
from token_exchange.handlers.jwks import JWKSHandler, jwks_body

access_log = logging.getLogger("token_exchange.access")


def log_request(handler):
    """One access line per request. The path only: a query string may hold a key."""
    request = handler.request
    access_log.info("%s %s %d %.1fms %s", request.method, request.path, handler.get_status(),
                    1000.0 * request.request_time(), request.remote_ip)


def make_app(verifier, issuer, public_jwks):
    token_deps = dict(verifier=verifier, issuer=issuer)
    return tornado.web.Application(
        [
            (r"/v0/token/autojoin", AutojoinHandler, token_deps),
            (r"/v0/token/integration", IntegrationHandler, token_deps),
            (r"/\.well-known/jwks\.json", JWKSHandler, dict(body=jwks_body(public_jwks))),
            (r"/health", HealthHandler),
        ],
        default_handler_class=NotFoundHandler,
        log_function=log_request,
    )
