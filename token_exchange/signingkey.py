"""The private JWK that signs tokens: loading, checking and generating it.

The file holds one private JWK, as the Go service reads it. Its "kid" goes
into every token header and its "alg" chooses the signature algorithm; when
"alg" is absent it is inferred from the key (RSA: RS256, P-256: ES256,
Ed25519: EdDSA). Error messages name the file and the problem, never any
key material.
"""

import json
import os
import uuid

from jwcrypto import jwk, jws

# alg -> (kty, curve or None)
SUPPORTED_ALGS = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
DEFAULT_ALG_BY_KEY = {("RSA", None): "RS256", ("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384",
                      ("EC", "P-521"): "ES512", ("OKP", "Ed25519"): "EdDSA"}
GENERATE_ALGS = ("RS256", "ES256", "EdDSA")
MIN_RSA_BITS = 2048
PRIVATE_PARAMS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class KeyFileError(Exception):
    """The signing key file cannot be used. str() is one line for the operator."""

    def __init__(self, path, problem):
        super().__init__(f"private key file {path}: {problem}")


class SigningKey:
    """A loaded private JWK with its algorithm and public half."""

    def __init__(self, private_jwk, alg):
        self.jwk = private_jwk
        self.alg = alg
        self.kid = private_jwk["kid"]
        public = json.loads(private_jwk.export_public())
        public["alg"] = alg
        self.public_jwk = public

    def __repr__(self):
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


def load_signing_key(path):
    """Read and check the private JWK at path; raise KeyFileError when unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(path, "is a directory, not a file") from None
    except PermissionError:
        raise KeyFileError(path, "cannot be read: permission denied") from None
    except OSError as e:
        raise KeyFileError(path, f"cannot be read: {e.strerror or type(e).__name__}") from None
    return parse_signing_key(raw, path)


def parse_signing_key(raw, path="<key>"):
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise KeyFileError(path, f"is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise KeyFileError(path, "does not hold a JSON object (expected one private JWK)")
    if "keys" in data and "kty" not in data:
        raise KeyFileError(path, "holds a JWK Set; expected one private JWK")
    kty = data.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeyFileError(path, f"unsupported or missing key type 'kty' {_shown(kty)}")
    if not data.get("kid") or not isinstance(data.get("kid"), str):
        raise KeyFileError(path, "JWK has no 'kid' (Key ID)")
    if "d" not in data:
        raise KeyFileError(path, "holds a public key; a private key is needed to sign")
    try:
        key = jwk.JWK(**data)
        # Builds the private key object, which is when its parameters get checked.
        private_key = key.get_op_key("sign")
    except Exception:  # jwcrypto's messages may quote parameters: never show them
        raise KeyFileError(path, f"is not a valid {kty} private JWK") from None
    if not key.has_private:
        raise KeyFileError(path, "holds a public key; a private key is needed to sign")

    curve = data.get("crv") if kty != "RSA" else None
    alg = data.get("alg") or DEFAULT_ALG_BY_KEY.get((kty, curve))
    if alg not in SUPPORTED_ALGS:
        raise KeyFileError(path, f"unsupported algorithm {_shown(alg)} for a {kty} key")
    if SUPPORTED_ALGS[alg] != (kty, curve):
        on_curve = f" on {curve}" if curve else ""
        raise KeyFileError(path, f"algorithm {alg} does not match a {kty} key{on_curve}")
    if kty == "RSA":
        bits = private_key.key_size
        if bits < MIN_RSA_BITS:
            raise KeyFileError(path, f"RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")

    signing_key = SigningKey(key, alg)
    _check_signs(signing_key, path)
    return signing_key


def _check_signs(signing_key, path):
    """Sign and verify once, so a key whose halves do not match fails now."""
    try:
        token = jws.JWS(b"start-up check")
        token.add_signature(signing_key.jwk, alg=signing_key.alg, protected={"alg": signing_key.alg})
        check = jws.JWS()
        check.deserialize(token.serialize(compact=True))
        check.verify(jwk.JWK(**signing_key.public_jwk), alg=signing_key.alg)
    except Exception:
        raise KeyFileError(path, "key cannot produce a verifiable signature") from None


def _shown(value):
    return repr(value) if isinstance(value, str) and len(value) <= 20 else "(missing)" if value is None else "(invalid)"


def generate_private_jwk(alg="RS256", kid=None):
    """A new private JWK (as a dict) in the format load_signing_key reads."""
    if alg == "RS256":
        key = jwk.JWK.generate(kty="RSA", size=2048)
    elif alg == "ES256":
        key = jwk.JWK.generate(kty="EC", crv="P-256")
    elif alg == "EdDSA":
        key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    else:
        raise ValueError(f"cannot generate {alg!r} keys; choose one of {', '.join(GENERATE_ALGS)}")
    data = json.loads(key.export_private())
    data.update(kid=kid or str(uuid.uuid4()), alg=alg, use="sig")
    return data


def write_private_jwk(path, data):
    """Write a private JWK readable by its owner only; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
