"""What the operator tools share: store flags, opening the store, output."""

import dataclasses
import functools
import json
import logging
import os
import shlex
import signal
import sys

from token_exchange.cli.flags import FlagParser, add_flag, add_store_flag, checked, env_name, tier_number
from token_exchange.store import StoreError, is_datastore, open_store
from token_exchange.verification.secrethash import (
    BCRYPT,
    DEFAULT_BCRYPT_COST,
    MAX_BCRYPT_COST,
    MIN_BCRYPT_COST,
    SCHEMES,
)

SAVE_WARNING = "IMPORTANT: Save the API key now. It cannot be retrieved later."
HELP_FLAGS = ("-h", "-help", "--help")


def add_store_flags(parser, namespace_default, namespace_help, namespace_env, go_environment=False):
    """-store, -store-timeout, -project and -namespace, read from the variables the service reads for
    them (STORE, PROJECT_ID, namespace_env), so that one exported environment serves both.

    go_environment: -project and -namespace also come from PROJECT and NAMESPACE, as the Go
    create-integration reads them."""
    add_store_flag(parser)
    add_flag(
        parser,
        "project",
        "Google Cloud project ID (required with -store datastore)",
        env=("PROJECT_ID", "PROJECT") if go_environment else "PROJECT_ID",
        default="",
    )
    add_flag(
        parser,
        "namespace",
        namespace_help,
        env=(namespace_env, "NAMESPACE") if go_environment else namespace_env,
        default=namespace_default,
    )


def _bcrypt_cost(value):
    cost = int(value)
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        raise ValueError(f"invalid bcrypt cost {value!r}: must be {MIN_BCRYPT_COST}..{MAX_BCRYPT_COST}")
    return cost


def add_new_key_flags(parser, go_environment=False):
    """The flags of a new integration key, as create-integration spells them.

    go_environment: -key-id, -key-description and -key-tier also come from KEY_ID, KEY_DESCRIPTION and
    KEY_TIER, as the Go create-integration reads them."""

    def env(name):
        return env_name(name) if go_environment else ()

    add_flag(parser, "key-id", "key ID, starting with ki_ (generated when empty)", env=env("key-id"), default="")
    add_flag(
        parser,
        "key-description",
        "human-readable description of the API key",
        env=env("key-description"),
        type=printable_text,
        default="",
    )
    add_flag(parser, "key-tier", "service tier of the API key", env=env("key-tier"), type=tier_number, default=0)
    add_flag(
        parser,
        "hash",
        "how the secret is hashed at rest: bcrypt, or sha256 (readable by the Go service)",
        choices=SCHEMES,
        default=BCRYPT,
    )
    add_flag(
        parser,
        "bcrypt-cost",
        "bcrypt cost factor",
        type=checked(_bcrypt_cost, "bcrypt cost"),
        default=DEFAULT_BCRYPT_COST,
    )


def add_json_flag(parser):
    add_flag(parser, "json", "print JSON for scripts instead of text for people", action="store_true")


def choose_command(prog, description, commands, argv):
    """Split `TOOL COMMAND [flags]`: return (command, its parser, its flags).

    commands: {name: (description, function adding its flags)}. -h prints the tool's help (exit 0);
    a missing or unknown command is one line (exit 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    names = ", ".join(commands)
    if argv and argv[0] in HELP_FLAGS:
        width = max(len(name) for name in commands)
        lines = [f"  {name:<{width}}  {text}" for name, (text, _) in commands.items()]
        sys.stdout.write(
            f"usage: {prog} COMMAND [flags]\n\n{description}\n\ncommands:\n"
            + "\n".join(lines)
            + f"\n\n{prog} COMMAND -h shows the flags of a command.\n"
        )
        sys.exit(0)
    if not argv:
        sys.stderr.write(f"usage: {prog} COMMAND [flags]; commands: {names} ({prog} -h for help)\n")
        sys.exit(2)
    command = argv[0]
    if command not in commands:
        sys.stderr.write(f"{prog}: error: unknown command {command!r}: use one of {names}\n")
        sys.exit(2)
    text, add_flags = commands[command]
    parser = FlagParser(f"{prog} {command}", text)
    add_flags(parser)
    return command, parser, argv[1:]


# Longest name or description the tools write: ample for people, short enough to list and to put in a token.
MAX_TEXT_CHARS = 256


def _printable_text(value):
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{len(value)} characters; at most {MAX_TEXT_CHARS} are allowed")
    if not value.isprintable():
        # The tools print it, and an org name goes into tokens: no line breaks or terminal escapes.
        raise ValueError(f"{value!r} holds a control character")
    return value


# An argparse type for names and descriptions: printable, at most MAX_TEXT_CHARS characters.
printable_text = checked(_printable_text, "text")


def quiet_when_output_closed(prog):
    """Decorates the main of the tool named prog. When its reader stops early (`integration-keys list | head`),
    the tool ends as cat does: killed by SIGPIPE, with nothing on stderr, instead of a BrokenPipeError
    traceback. With no standard output at all it refuses to start, before it changes anything (a new key
    would never be shown); when writing fails otherwise (a full disk), it says so in one line."""

    def decorate(main):
        @functools.wraps(main)
        def run(argv=None):
            if sys.stdout is None:  # started with its standard output closed
                die(prog, "standard output is closed: nowhere to write what this command prints")
            try:
                main(argv)
                sys.stdout.flush()  # the rest of the output, while a broken pipe can still be caught here
            except BrokenPipeError:
                # Python ignores SIGPIPE; let it take its default action, which ends the process.
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGPIPE)
            except OSError as e:  # the tools turn their own file and store errors into one line: this is output
                die(prog, f"cannot write to standard output: {e.strerror or e}")

        return run

    return decorate


def print_json(value):
    """Dataclasses (and lists and dicts of them) as indented JSON on stdout."""
    print(json.dumps(_plain(value), indent=2))


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


def print_owners(owners, args, kind, heading, key_columns, key_row):
    """What a list command found: JSON ({kind: owners}) with -json, else a heading line per owner
    (heading(owner)) over a table of its keys (key_row(key) under key_columns)."""
    if args.json:
        print_json({kind: owners})
        return
    if not owners:
        print(f"No {kind} in namespace '{args.namespace}'.")
    for owner in owners:
        print(heading(owner))
        if not owner.keys:
            print("  (no keys)")
            continue
        print_table(key_columns, [key_row(key) for key in owner.keys])


def print_table(header, rows, indent="  "):
    """Columns padded to their widest cell, for people to read."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def start(parser, argv):
    """Parse flags and set up logging for a tool; say which flags the environment set."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if parser.environment_used:
        logging.getLogger(parser.prog).info(
            "From the environment: %s",
            " ".join(f"{name}={shlex.quote(value)}" for name, value in parser.environment_used.items()),
        )
    return args


def store_description(args):
    """Where a tool writes, for its log: the Datastore project, or the -store value."""
    return f"Datastore project '{args.project}'" if is_datastore(args.store) else args.store


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


def print_created_integration_key(result):
    print_created([("Integration ID", result.integration_id), ("Key ID", result.key_id), ("API Key", result.api_key)])


def print_created(lines):
    """The Go tool's block, on stdout: a blank line, the header, the fields, the warning."""
    print()
    print("=== API Key Created ===")
    for label, value in lines:
        print(f"{label + ':':<16}{value}")
    print()
    print(SAVE_WARNING)
