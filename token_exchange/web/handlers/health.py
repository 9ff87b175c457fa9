"""GET /health: the process answers. Says nothing about the key store."""

from token_exchange.web.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    def get(self):
        self.finish("ok")

    head = get
