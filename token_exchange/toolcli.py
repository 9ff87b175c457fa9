"""What the operator tools share: store flags, opening the store, output."""

import logging
import sys

from token_exchange.cliflags import add_flag, add_store_flag
from token_exchange.store import StoreError, is_datastore, open_store

SAVE_WARNING = "IMPORTANT: Save the API key now. It cannot be retrieved later."


def add_store_flags(parser, namespace_default, namespace_help):
    add_store_flag(parser)
    add_flag(parser, "project", "Google Cloud project ID (required with -store datastore)", default="")
    add_flag(parser, "namespace", namespace_help, default=namespace_default)


def start(parser, argv):
    """Parse flags and set up logging for a tool."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    return args


def open_tool_store(parser, args, **namespaces):
    if is_datastore(args.store) and not args.project:
        parser.error("-project is required with -store datastore")
    try:
        return open_store(args.store, project=args.project, timeout_seconds=args.store_timeout, **namespaces)
    except StoreError as e:
        die(parser.prog, e)


def die(prog, message):
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(1)


def print_created(lines):
    """The Go tool's block, on stdout: a blank line, the header, the fields, the warning."""
    print()
    print("=== API Key Created ===")
    for label, value in lines:
        print(f"{label + ':':<16}{value}")
    print()
    print(SAVE_WARNING)
