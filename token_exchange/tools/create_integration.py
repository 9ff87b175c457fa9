"""create-integration: create a client integration and one API key for it.

create-integration -store sqlite:keys.db -integration-id acme -key-tier 1
create-integration -project mlab-sandbox -integration-id acme
"""

import logging

from token_exchange.cli.flags import FlagParser, add_flag, env_name
from token_exchange.store import DEFAULT_INTEGRATION_NS, StoreError
from token_exchange.tools.common import (
    add_new_key_flags,
    add_store_flags,
    die,
    open_tool_store,
    print_created_integration_key,
    printable_text,
    quiet_when_output_closed,
    start,
    store_description,
)
from token_exchange.tools.provisioning import create_integration_key
from token_exchange.verification.apikey import MalformedKey, check_integration_id, check_key_id

PROG = "create-integration"
log = logging.getLogger(PROG)


def build_parser():
    parser = FlagParser(PROG, "Create a client integration and an API key for it.")
    # The Go tool's flags are also read from the variables it reads them from (flagx.ArgsFromEnv), so
    # that a script written for it works unchanged; the project and namespace also from the service's.
    add_store_flags(
        parser, DEFAULT_INTEGRATION_NS, "namespace of client integrations", "CLIENT_INTEGRATION_NS", go_environment=True
    )
    add_flag(parser, "integration-id", "integration ID (required)", env=env_name("integration-id"), default="")
    add_flag(
        parser,
        "integration-description",
        "human-readable description of the integration",
        env=env_name("integration-description"),
        type=printable_text,
        default="",
    )
    add_new_key_flags(parser, go_environment=True)
    return parser


@quiet_when_output_closed(PROG)
def main(argv=None):
    parser = build_parser()
    args = start(parser, argv)
    if not args.integration_id:
        parser.error("-integration-id is required")
    try:  # before anything is echoed or opened
        check_integration_id(args.integration_id)
        if args.key_id:
            check_key_id(args.key_id)
    except MalformedKey as e:
        parser.error(str(e))
    store = open_tool_store(parser, args, integration_ns=args.namespace)
    try:
        log.info(
            "Creating integration '%s' in %s, namespace '%s'...",
            args.integration_id,
            store_description(args),
            args.namespace,
        )
        result = create_integration_key(
            store,
            args.integration_id,
            key_id=args.key_id,
            integration_description=args.integration_description,
            key_description=args.key_description,
            tier=args.key_tier,
            hash_scheme=args.hash,
            bcrypt_cost=args.bcrypt_cost,
        )
    except (MalformedKey, StoreError) as e:
        die(PROG, e)
    finally:
        store.close()
    log.info("Integration %s", "created" if result.integration_created else "already existed; kept as it is")
    print_created_integration_key(result)


if __name__ == "__main__":
    main()
