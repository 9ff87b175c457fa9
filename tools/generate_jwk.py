"""generate-jwk: write a new private JWK that token-exchange can sign with.

    generate-jwk -out jwk-priv.json                               # RS256, random kid
    generate-jwk -alg EdDSA -out jwk-priv.json
    generate-jwk -add-to jwk-priv.json -out jwk-set.json          # rotation: publish a new key

With -add-to, -out gets a JWK Set: the keys of the given key file (its
signer still signs) followed by the new private key, published in the JWKS
but not signing until it is moved first.
"""

from token_exchange.cliflags import FlagParser, add_flag
from token_exchange.signingkey import (
    GENERATE_ALGS,
    KeyFileError,
    extend_key_set,
    generate_private_jwk,
    write_private_jwk,
)
from token_exchange.toolcli import die, start

PROG = "generate-jwk"


def build_parser():
    parser = FlagParser(PROG, "Generate a private JWK for signing tokens (file mode 0600, never overwritten).")
    add_flag(parser, "alg", "signature algorithm", choices=GENERATE_ALGS, default="RS256")
    add_flag(parser, "kid", "key ID (a random UUID when empty)", default="")
    add_flag(parser, "out", "file to write the private JWK (or, with -add-to, the JWK Set) to (required)",
             default="")
    add_flag(parser, "add-to", "key file (a private JWK or a JWK Set) whose keys come first in the JWK Set "
             "written to -out", default="")
    return parser


def main(argv=None):
    parser = build_parser()
    args = start(parser, argv)
    if not args.out:
        parser.error("-out is required")
    data = generate_private_jwk(args.alg, args.kid or None)
    if args.add_to:
        try:
            with open(args.add_to, "rb") as f:
                data = extend_key_set(f.read(), args.add_to, data)
        except KeyFileError as e:
            die(PROG, e)
        except OSError as e:
            die(PROG, f"cannot read {args.add_to}: {e.strerror}")
    try:
        write_private_jwk(args.out, data)
    except FileExistsError:
        die(PROG, f"{args.out} already exists; refusing to overwrite a key")
    except OSError as e:
        die(PROG, f"cannot write {args.out}: {e.strerror}")
    if args.add_to:
        new_kid = data["keys"][-1]["kid"]
        print(f"Wrote a JWK Set to {args.out}: the keys of {args.add_to}, then the new {args.alg} private key "
              f"kid={new_kid} (published, not signing)")
    else:
        print(f"Wrote {args.alg} private key kid={data['kid']} to {args.out}")


if __name__ == "__main__":
    main()
