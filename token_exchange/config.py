"""The service's configuration: flags as the Go service has them, plus -store."""

import os

from token_exchange.cliflags import FlagParser, add_flag, add_store_flag, listen_address, port_number
from token_exchange.store import DEFAULT_INTEGRATION_NS, DEFAULT_PLATFORM_NS

DEFAULT_PRIVATE_KEY_PATH = "/secrets/jwk-priv.json"


def build_parser():
    parser = FlagParser("token-exchange", "Exchanges API keys for short-lived signed JWTs.")
    add_flag(parser, "port", "port to listen on", type=port_number, default=8080)
    add_flag(parser, "private-key-path", "file holding the private JWK that signs tokens",
             default=DEFAULT_PRIVATE_KEY_PATH)
    add_flag(parser, "platform-ns", "namespace of autojoin credentials", default=DEFAULT_PLATFORM_NS)
    add_flag(parser, "client-integration-ns", "namespace of client-integration credentials",
             default=DEFAULT_INTEGRATION_NS)
    add_flag(parser, "project-id", "Google Cloud project of the Datastore key store", default="mlab-sandbox")
    add_flag(parser, "prometheusx.listen-address", "address of the metrics server (not served yet)",
             type=listen_address, default=":9990")
    add_store_flag(parser)
    return parser


def parse_config(argv=None, env=None):
    """Parse flags (argv) and environment (env, default os.environ); exit 2 with one line on error."""
    return build_parser().parse_args(args=argv, env_vars=os.environ if env is None else env)
