"""autojoin-keys: list organisations and their autojoin keys, revoke an autojoin key.

    autojoin-keys list -store sqlite:keys.db [-org example-org] [-json]
    autojoin-keys revoke -project mlab-sandbox -fingerprint 3f2a9c01b7de [-org example-org]

A key is shown only by its fingerprint: the first 12 hex digits of its
SHA-256. Revoking deletes the key (the Go service has no status for
autojoin keys); the organisation and its other keys stay.
"""

import re

from token_exchange.cli.flags import add_flag
from token_exchange.store import DEFAULT_PLATFORM_NS, MIN_FINGERPRINT_PREFIX, StoreError
from token_exchange.tools.common import (
    add_json_flag,
    add_store_flags,
    choose_command,
    die,
    open_tool_store,
    print_json,
    print_owners,
    quiet_when_output_closed,
    start,
)

PROG = "autojoin-keys"
DESCRIPTION = "List organizations and their autojoin keys, revoke an autojoin key."
_FINGERPRINT = re.compile(rf"[0-9a-fA-F]{{{MIN_FINGERPRINT_PREFIX},64}}")


def _store_flags(parser):
    add_store_flags(parser, DEFAULT_PLATFORM_NS, "namespace of autojoin credentials", "PLATFORM_NS")
    add_json_flag(parser)


def _list_flags(parser):
    _store_flags(parser)
    add_flag(parser, "org", "only this organization (all when empty)", default="")


def _revoke_flags(parser):
    _store_flags(parser)
    add_flag(
        parser,
        "fingerprint",
        f"the key's fingerprint as listed, or its first {MIN_FINGERPRINT_PREFIX}+ hex digits (required)",
        default="",
    )
    add_flag(parser, "org", "only match keys of this organization", default="")


COMMANDS = {
    "list": ("List organizations and their autojoin keys (by fingerprint, never the key).", _list_flags),
    "revoke": ("Revoke an autojoin key: delete it, found by its fingerprint.", _revoke_flags),
}


@quiet_when_output_closed(PROG)
def main(argv=None):
    command, parser, argv = choose_command(PROG, DESCRIPTION, COMMANDS, argv)
    args = start(parser, argv)
    if command == "revoke":
        if not args.fingerprint:
            parser.error("-fingerprint is required")
        if not _FINGERPRINT.fullmatch(args.fingerprint):
            parser.error(f"invalid fingerprint: expected {MIN_FINGERPRINT_PREFIX} to 64 hex digits")
    store = open_tool_store(parser, args, platform_ns=args.namespace)
    try:
        if command == "list":
            list_keys(store, args)
        else:
            revoke_key(store, args)
    except StoreError as e:
        die(parser.prog, e)
    finally:
        store.close()


def list_keys(store, args):
    organizations = store.list_organizations(args.org or None)
    if args.org and not organizations:
        raise StoreError(f"organization {args.org!r} does not exist")
    print_owners(
        organizations,
        args,
        "organizations",
        lambda org: f"{org.name}  created {org.created_at or '-'}  {org.email or '(no email)'}",
        ("FINGERPRINT", "CREATED"),
        lambda key: (key.fingerprint, key.created_at or "-"),
    )


def revoke_key(store, args):
    org, fingerprint = store.delete_autojoin_key(args.fingerprint, args.org or None)
    if args.json:
        print_json({"organization": org, "fingerprint": fingerprint, "revoked": True})
    else:
        print(f"Revoked (deleted) autojoin key {fingerprint} of organization {org}.")


if __name__ == "__main__":
    main()
