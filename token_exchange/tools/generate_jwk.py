"""generate-jwk: write a new private JWK that token-exchange can sign with,
and edit the key file through a signing-key rotation.

    generate-jwk -out jwk-priv.json                   # RS256, random kid
    generate-jwk -alg EdDSA -out jwk-priv.json
    generate-jwk -set jwk-priv.json -add              # new key: published, not signing yet
    generate-jwk -set jwk-priv.json -promote NEW_KID  # it signs; the old key stays published
    generate-jwk -set jwk-priv.json -retire OLD_KID   # no longer published

Every edit leaves a file the service loads (checked before writing) and is
written atomically, keeping the file's group and its owner and group
permissions (at most 0640); through a symbolic link, the file it names is
edited. A new key file has mode 0600. A one-key file becomes a JWK Set
{"keys": [...]} on its first -add.
"""

import json
import sys

from token_exchange.cli.flags import FlagParser, add_flag, checked
from token_exchange.signing.keyfile import (
    GENERATE_ALGS,
    MAX_KID_CHARS,
    KeyFileError,
    consumer_warning,
    generate_private_jwk,
    kid_length_problem,
    parse_key_set,
    read_key_file,
    replace_key_file,
    write_private_jwk,
)
from token_exchange.tools.common import die, quiet_when_output_closed, start

PROG = "generate-jwk"


class EditRefused(Exception):
    """The asked edit of the key set makes no sense; str() is one line for the operator."""


def _kid(value):
    problem = kid_length_problem(value)
    if problem:
        raise ValueError(problem)
    if not value.isprintable():  # it is printed, and goes into every token's header
        raise ValueError(f"kid {value!r} holds a control character")
    return value


def build_parser():
    kid = checked(_kid, "kid")
    parser = FlagParser(
        PROG,
        "Generate a private JWK for signing tokens (file mode 0600, never overwritten), "
        "or add, promote or retire a key of a key file for a rotation.",
    )
    add_flag(
        parser,
        "alg",
        "signature algorithm of a new key (Cloud Endpoints, in front of locate and autojoin, cannot verify EdDSA)",
        choices=GENERATE_ALGS,
        default="RS256",
    )
    add_flag(
        parser,
        "kid",
        f"key ID of a new key, at most {MAX_KID_CHARS} characters (a random UUID when empty)",
        type=kid,
        default="",
    )
    add_flag(parser, "out", "file to write a new private JWK to", default="")
    add_flag(
        parser, "set", "key file to edit (one private JWK or a JWK Set), with -add, -promote or -retire", default=""
    )
    add_flag(parser, "add", "with -set: generate a new key and append it (published, not signing)", action="store_true")
    add_flag(parser, "promote", "with -set: the kid of a private key to sign with from now on", type=kid, default="")
    add_flag(
        parser, "retire", "with -set: the kid of a key to stop publishing (never the signing key)", type=kid, default=""
    )
    return parser


@quiet_when_output_closed(PROG)
def main(argv=None):
    parser = build_parser()
    args = start(parser, argv)
    edits = [name for name in ("add", "promote", "retire") if getattr(args, name)]
    if args.out and args.set:
        parser.error("-out and -set cannot be used together")
    if args.out:
        if edits:
            parser.error(f"-{edits[0]} needs -set, not -out")
        write_new_key(args)
    elif args.set:
        if len(edits) != 1:
            parser.error("-set needs exactly one of -add, -promote KID, -retire KID")
        edit_key_set(args, edits[0])
    else:
        parser.error("-out (a new key file) or -set (a key file to edit) is required")


def warn_about_consumers(alg):
    """Say on stderr when some consumers cannot verify tokens signed with alg."""
    warning = consumer_warning(alg)
    if warning:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")


def write_new_key(args):
    warn_about_consumers(args.alg)
    data = generate_private_jwk(args.alg, args.kid or None)
    try:
        write_private_jwk(args.out, data)
    except FileExistsError:
        die(PROG, f"{args.out} already exists; refusing to overwrite a key")
    except OSError as e:
        die(PROG, f"cannot write {args.out}: {e.strerror}")
    print(f"Wrote {args.alg} private key kid={data['kid']} to {args.out}")


def edit_key_set(args, edit):
    path = args.set
    try:
        raw = read_key_file(path)
        parse_key_set(raw, path)  # edit only a file the service loads
        data = json.loads(raw)
        members = list(data["keys"]) if "keys" in data and "kty" not in data else [data]
        if edit == "add":
            if args.kid and any(member.get("kid") == args.kid for member in members):
                raise EditRefused(f"-kid: a key with kid {args.kid!r} is already in the key file")
            new = generate_private_jwk(args.alg, args.kid or None)
            members.append(new)
            done = f"Added {args.alg} private key kid={new['kid']} (published, not signing)"
        elif edit == "promote":
            members, done = promoted(members, args.promote)
        else:
            members, done = retired(members, args.retire)
        edited = {"keys": members}
        keys = parse_key_set(json.dumps(edited), path)
    except (KeyFileError, EditRefused) as e:
        die(PROG, e)
    try:
        replace_key_file(path, edited)
    except OSError as e:
        die(PROG, f"cannot write {path}: {e.strerror}")
    if edit == "add":
        warn_about_consumers(args.alg)
    elif edit == "promote":
        warn_about_consumers(keys.signing_key.alg)
    print(f"{done} in {path}")
    print(f"Signing kid: {keys.signing_key.kid}")
    print(f"Published kids: {', '.join(keys.published_kids)}")


def _position(members, kid, path_flag):
    for position, member in enumerate(members):
        if member.get("kid") == kid:
            return position
    raise EditRefused(f"{path_flag}: no key with kid {kid!r} in the key file")


def _signing_position(members):
    return next(position for position, member in enumerate(members) if "d" in member)


def promoted(members, kid):
    """The members with kid's key first, so it signs; the others keep their order."""
    position = _position(members, kid, "-promote")
    if "d" not in members[position]:
        raise EditRefused(f"-promote: key {kid!r} is public only; only a private key can sign")
    if position == _signing_position(members):
        raise EditRefused(f"-promote: key {kid!r} already signs")
    key = members[position]
    rest = members[:position] + members[position + 1 :]
    return [key, *rest], f"Promoted key kid={kid} to signing"


def retired(members, kid):
    """The members without kid's key; the signing key cannot go."""
    position = _position(members, kid, "-retire")
    if position == _signing_position(members):
        raise EditRefused(f"-retire: key {kid!r} signs; promote another key first")
    return members[:position] + members[position + 1 :], f"Retired key kid={kid} (no longer published)"


if __name__ == "__main__":
    main()
