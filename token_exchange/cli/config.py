"""The service's configuration: flags as the Go service has them, plus -store."""

import os

from token_exchange.cli.flags import (
    MAX_WORKERS,
    FlagParser,
    add_flag,
    add_store_flag,
    listen_address,
    non_negative_seconds,
    port_number,
    positive_int,
    positive_seconds,
    proxy_count,
    worker_count,
)
from token_exchange.observability.logs import FORMATS
from token_exchange.store import DEFAULT_INTEGRATION_NS, DEFAULT_PLATFORM_NS
from token_exchange.verification.admission import DEFAULT_MAX_PENDING
from token_exchange.verification.recordcache import DEFAULT_KEY_CACHE_TTL_SECONDS
from token_exchange.web.accesslog import ACCESS_LOG_CHOICES, DEFAULT_ACCESS_LOG

DEFAULT_PRIVATE_KEY_PATH = "/secrets/jwk-priv.json"
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0


def build_parser():
    parser = FlagParser("token-exchange", "Exchanges API keys for short-lived signed JWTs.", env_from_flag_names=True)
    add_flag(parser, "port", "port to listen on", type=port_number, default=8080)
    add_flag(
        parser,
        "private-key-path",
        "file holding the private JWK that signs tokens, or a JWK Set (its first private key signs; "
        "every key is published in the JWKS)",
        default=DEFAULT_PRIVATE_KEY_PATH,
    )
    add_flag(parser, "platform-ns", "namespace of autojoin credentials", default=DEFAULT_PLATFORM_NS)
    add_flag(
        parser, "client-integration-ns", "namespace of client-integration credentials", default=DEFAULT_INTEGRATION_NS
    )
    add_flag(parser, "project-id", "Google Cloud project of the Datastore key store", default="mlab-sandbox")
    add_flag(
        parser,
        "prometheusx.listen-address",
        "[HOST]:PORT of the Prometheus metrics server (/metrics)",
        type=listen_address,
        default=":9990",
    )
    add_store_flag(parser)
    add_flag(
        parser,
        "key-cache-ttl",
        "seconds a key record read from the store is reused; "
        "a revoked or changed key stops working within this time (0: read the store on every request)",
        type=non_negative_seconds,
        default=DEFAULT_KEY_CACHE_TTL_SECONDS,
    )
    add_flag(
        parser,
        "max-pending-verifications",
        "bcrypt checks that may be queued or running at once; "
        "beyond this a cache-miss exchange is answered 503 with Retry-After",
        type=positive_int,
        default=DEFAULT_MAX_PENDING,
    )
    add_flag(
        parser,
        "trusted-proxies",
        "proxies in front of the service that append the client's address to X-Forwarded-For; "
        "the limits on bcrypt checks count clients by it (0: the header is never read)",
        type=proxy_count,
        default=0,
    )
    add_flag(
        parser,
        "log-format",
        "log format on stderr: json or text (default: text when stderr is a terminal, else json)",
        choices=FORMATS,
        default=None,
    )
    add_flag(
        parser,
        "access-log",
        "requests that leave an access line: all, errors (answered 4xx or 5xx) or off",
        choices=ACCESS_LOG_CHOICES,
        default=DEFAULT_ACCESS_LOG,
    )
    add_flag(
        parser,
        "shutdown-grace",
        "seconds requests in flight may take to finish after SIGTERM or SIGINT",
        type=positive_seconds,
        default=DEFAULT_SHUTDOWN_GRACE_SECONDS,
    )
    add_flag(
        parser,
        "workers",
        f"number of server processes sharing the port (at most {MAX_WORKERS})",
        type=worker_count,
        default=1,
    )
    return parser


def parse_config(argv=None, env=None):
    """Parse flags (argv) and environment (env, default os.environ); exit 2 with one line on error."""
    return build_parser().parse_args(args=argv, env_vars=os.environ if env is None else env)
