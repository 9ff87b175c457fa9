"""/health: the process answers "ok" to any method, as the Go service's. Says nothing about the key store."""

from token_exchange.web.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    ALLOWED_METHODS = BaseHandler.SUPPORTED_METHODS

    def get(self):
        self.finish("ok")

    head = post = put = delete = patch = options = get
