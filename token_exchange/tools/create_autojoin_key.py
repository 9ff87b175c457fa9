"""create-autojoin-key: create an autojoin API key for an organisation.

create-autojoin-key -store sqlite:keys.db -org example-org -email ops@example.org
"""

import logging

from token_exchange.cli.flags import FlagParser, add_flag
from token_exchange.store import DEFAULT_PLATFORM_NS, StoreError
from token_exchange.tools.common import (
    add_store_flags,
    die,
    open_tool_store,
    print_created,
    printable_text,
    quiet_when_output_closed,
    start,
    store_description,
)
from token_exchange.tools.provisioning import create_autojoin_key

PROG = "create-autojoin-key"
log = logging.getLogger(PROG)


def build_parser():
    parser = FlagParser(PROG, "Create an autojoin API key for an organization (created if needed).")
    add_store_flags(parser, DEFAULT_PLATFORM_NS, "namespace of autojoin credentials", "PLATFORM_NS")
    add_flag(parser, "org", "organization name (required; its tokens' org claim)", type=printable_text, default="")
    add_flag(
        parser,
        "email",
        "contact email of the organization, used when creating it",
        type=printable_text,
        default="",
    )
    return parser


@quiet_when_output_closed(PROG)
def main(argv=None):
    parser = build_parser()
    args = start(parser, argv)
    if not args.org:
        parser.error("-org is required")
    store = open_tool_store(parser, args, platform_ns=args.namespace)
    try:
        log.info(
            "Creating an autojoin key for '%s' in %s, namespace '%s'...",
            args.org,
            store_description(args),
            args.namespace,
        )
        result = create_autojoin_key(store, args.org, args.email)
    except StoreError as e:
        die(PROG, e)
    finally:
        store.close()
    log.info("Organization %s", "created" if result.org_created else "already existed")
    print_created([("Organization", result.org), ("API Key", result.api_key)])


if __name__ == "__main__":
    main()
