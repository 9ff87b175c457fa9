"""generate-jwk: write a new private JWK that token-exchange can sign with.

    generate-jwk -out jwk-priv.json              # RS256, random kid
    generate-jwk -alg EdDSA -out jwk-priv.json
"""

from token_exchange.cliflags import FlagParser, add_flag
from token_exchange.signingkey import GENERATE_ALGS, generate_private_jwk, write_private_jwk
from token_exchange.toolcli import die, start

PROG = "generate-jwk"


def build_parser():
    parser = FlagParser(PROG, "Generate a private JWK for signing tokens (file mode 0600, never overwritten).")
    add_flag(parser, "alg", "signature algorithm", choices=GENERATE_ALGS, default="RS256")
    add_flag(parser, "kid", "key ID (a random UUID when empty)", default="")
    add_flag(parser, "out", "file to write the private JWK to (required)", default="")
    return parser


def main(argv=None):
    parser = build_parser()
    args = start(parser, argv)
    if not args.out:
        parser.error("-out is required")
    data = generate_private_jwk(args.alg, args.kid or None)
    try:
        write_private_jwk(args.out, data)
    except FileExistsError:
        die(PROG, f"{args.out} already exists; refusing to overwrite a key")
    except OSError as e:
        die(PROG, f"cannot write {args.out}: {e.strerror}")
    print(f"Wrote {args.alg} private key kid={data['kid']} to {args.out}")


if __name__ == "__main__":
    main()
