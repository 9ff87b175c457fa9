"""integration-keys: list, add, revoke, re-activate and re-tier client integration API keys.

    integration-keys list -store sqlite:keys.db [-integration-id acme] [-json]
    integration-keys add -store sqlite:keys.db -integration-id acme -key-tier 1
    integration-keys revoke -project mlab-sandbox -integration-id acme -key-id ki_0123456789abcdef
    integration-keys activate -project mlab-sandbox -integration-id acme -key-id ki_0123456789abcdef
    integration-keys set-tier -store sqlite:keys.db -integration-id acme -key-id ki_... -key-tier 2

A revoked key keeps its entity with status "revoked"; the service refuses
every status other than "active", and `activate` sets it back.
"""

import logging

from token_exchange.cli.flags import add_flag, tier_number
from token_exchange.store import ACTIVE, DEFAULT_INTEGRATION_NS, StoreError
from token_exchange.tools.common import (
    add_json_flag,
    add_new_key_flags,
    add_store_flags,
    choose_command,
    die,
    open_tool_store,
    print_created_integration_key,
    print_json,
    print_owners,
    quiet_when_output_closed,
    start,
    store_description,
)
from token_exchange.tools.provisioning import add_integration_key
from token_exchange.verification.apikey import MalformedKey

PROG = "integration-keys"
DESCRIPTION = "List, add, revoke, re-activate and re-tier client integration API keys."
REVOKED = "revoked"
log = logging.getLogger(PROG)


def _store_flags(parser):
    add_store_flags(parser, DEFAULT_INTEGRATION_NS, "namespace of client integrations", "CLIENT_INTEGRATION_NS")
    add_json_flag(parser)


def _list_flags(parser):
    _store_flags(parser)
    add_flag(parser, "integration-id", "only this integration (all when empty)", default="")


def _add_flags(parser):
    _store_flags(parser)
    add_flag(parser, "integration-id", "the existing integration to add a key to (required)", default="")
    add_new_key_flags(parser)


def _key_flags(parser):
    _store_flags(parser)
    add_flag(parser, "integration-id", "integration ID (required)", default="")
    add_flag(parser, "key-id", "key ID, starting with ki_ (required)", default="")


def _tier_flags(parser):
    _key_flags(parser)
    add_flag(parser, "key-tier", "the new service tier (required)", type=tier_number, default=None)


COMMANDS = {
    "list": ("List integrations and their keys (never a secret or hash).", _list_flags),
    "add": ("Add a new API key to an existing integration.", _add_flags),
    "revoke": ("Revoke a key: set its status to 'revoked'; the service then refuses it.", _key_flags),
    "activate": ("Re-activate a key: set its status back to 'active'.", _key_flags),
    "set-tier": ("Change a key's service tier.", _tier_flags),
}
REQUIRED = {
    "add": ("integration-id",),
    "revoke": ("integration-id", "key-id"),
    "activate": ("integration-id", "key-id"),
    "set-tier": ("integration-id", "key-id", "key-tier"),
}


@quiet_when_output_closed(PROG)
def main(argv=None):
    command, parser, argv = choose_command(PROG, DESCRIPTION, COMMANDS, argv)
    args = start(parser, argv)
    for flag in REQUIRED.get(command, ()):
        if getattr(args, flag.replace("-", "_")) in ("", None):
            parser.error(f"-{flag} is required")
    store = open_tool_store(parser, args, integration_ns=args.namespace)
    try:
        if command == "list":
            list_keys(store, args)
        elif command == "add":
            add_key(store, args)
        else:
            change_key(store, command, args)
    except (MalformedKey, StoreError) as e:
        die(parser.prog, e)
    finally:
        store.close()


def list_keys(store, args):
    integrations = store.list_integrations(args.integration_id or None)
    if args.integration_id and not integrations:
        raise StoreError(f"integration {args.integration_id!r} does not exist")
    print_owners(
        integrations,
        args,
        "integrations",
        lambda integration: (
            f"{integration.integration_id}  created {integration.created_at or '-'}"
            f"  {integration.description or '(no description)'}"
        ),
        ("KEY ID", "TIER", "STATUS", "HASH", "CREATED", "DESCRIPTION"),
        lambda key: (key.key_id, key.tier, key.status or "-", key.hash_scheme, key.created_at or "-", key.description),
    )


def add_key(store, args):
    log.info(
        "Adding a key to integration '%s' in %s, namespace '%s'...",
        args.integration_id,
        store_description(args),
        args.namespace,
    )
    result = add_integration_key(
        store, args.integration_id, args.key_id, args.key_description, args.key_tier, args.hash, args.bcrypt_cost
    )
    if args.json:
        print_json({"integration_id": result.integration_id, "key_id": result.key_id, "api_key": result.api_key})
    else:
        print_created_integration_key(result)


def change_key(store, command, args):
    if command == "set-tier":
        store.update_integration_key(args.integration_id, args.key_id, tier=args.key_tier)
        done, change = "Changed the tier of", {"tier": args.key_tier}
    else:
        status = REVOKED if command == "revoke" else ACTIVE
        store.update_integration_key(args.integration_id, args.key_id, status=status)
        done, change = ("Revoked" if command == "revoke" else "Re-activated"), {"status": status}
    if args.json:
        print_json({"integration_id": args.integration_id, "key_id": args.key_id, **change})
    else:
        ((name, value),) = change.items()
        print(f"{done} key {args.key_id} of integration {args.integration_id} ({name} {value}).")


if __name__ == "__main__":
    main()
