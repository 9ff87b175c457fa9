"""The private JWK that signs tokens: loading, checking and generating it.

The file holds one private JWK, as the Go service reads it, or a JWK Set
for rotation (see parse_key_set). The signing key's "kid" goes
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
        self.problem = problem


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


def load_key_set(path):
    """Read and check the key file at path (one private JWK or a JWK Set); raise KeyFileError when unusable."""
    return parse_key_set(_read(path), path)


def load_signing_key(path):
    """Read and check the private JWK at path; raise KeyFileError when unusable."""
    return parse_signing_key(_read(path), path)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(path, "is a directory, not a file") from None
    except PermissionError:
        raise KeyFileError(path, "cannot be read: permission denied") from None
    except OSError as e:
        raise KeyFileError(path, f"cannot be read: {e.strerror or type(e).__name__}") from None


class KeySet:
    """The key that signs and every public key the JWKS publishes (the signer's first)."""

    def __init__(self, signing_key, public_jwks):
        self.signing_key = signing_key
        self.public_jwks = public_jwks

    @property
    def kids(self):
        return [key["kid"] for key in self.public_jwks]

    def __repr__(self):
        return f"KeySet(signing={self.signing_key.kid!r}, published={self.kids!r})"


def parse_key_set(raw, path="<key>"):
    """One private JWK (the Go format), or a JWK Set whose first private key signs.

    Every other key of the set, private or public only, is published so that
    tokens it signed keep verifying: that is how a signing key is rotated.
    """
    data = _json_object(raw, path)
    if "keys" not in data or "kty" in data:
        signing_key = parse_signing_key(raw, path)
        return KeySet(signing_key, [signing_key.public_jwk])
    keys = data["keys"]
    if not isinstance(keys, list) or not keys:
        raise KeyFileError(path, "JWK Set has no keys (expected a non-empty 'keys' list)")
    loaded, seen = [], set()
    for number, entry in enumerate(keys, 1):
        if not isinstance(entry, dict):
            raise KeyFileError(path, f"JWK Set key {number} is not a JSON object")
        try:
            key = _parse_jwk(entry, path, private_required=False)
        except KeyFileError as e:
            raise KeyFileError(path, f"JWK Set key {number}: {e.problem}") from None
        kid = key.kid if isinstance(key, SigningKey) else key["kid"]
        if kid in seen:
            raise KeyFileError(path, f"JWK Set has two keys with kid {_shown(kid)}")
        seen.add(kid)
        loaded.append(key)
    private = [key for key in loaded if isinstance(key, SigningKey)]
    if not private:
        raise KeyFileError(path, "JWK Set has no private key to sign with")
    signing_key = private[0]
    published = [signing_key.public_jwk] + [
        key.public_jwk if isinstance(key, SigningKey) else key for key in loaded if key is not signing_key]
    return KeySet(signing_key, published)


def _json_object(raw, path):
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise KeyFileError(path, f"is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise KeyFileError(path, "does not hold a JSON object (expected a private JWK or a JWK Set)")
    return data


def parse_signing_key(raw, path="<key>"):
    data = _json_object(raw, path)
    if "keys" in data and "kty" not in data:
        raise KeyFileError(path, "holds a JWK Set; expected one private JWK")
    return _parse_jwk(data, path, private_required=True)


def _parse_jwk(data, path, private_required):
    """A SigningKey for a private JWK; for a public one (when allowed), its public JWK dict with alg."""
    kty = data.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeyFileError(path, f"unsupported or missing key type 'kty' {_shown(kty)}")
    if not data.get("kid") or not isinstance(data.get("kid"), str):
        raise KeyFileError(path, "JWK has no 'kid' (Key ID)")
    is_private = "d" in data
    if private_required and not is_private:
        raise KeyFileError(path, "holds a public key; a private key is needed to sign")
    try:
        key = jwk.JWK(**data)
        # Builds the key object, which is when its parameters get checked.
        op_key = key.get_op_key("sign" if is_private else "verify")
    except Exception:  # jwcrypto's messages may quote parameters: never show them
        kind = "private" if is_private else "public"
        raise KeyFileError(path, f"is not a valid {kty} {kind} JWK") from None
    if is_private and not key.has_private:
        raise KeyFileError(path, "holds a public key; a private key is needed to sign")

    curve = data.get("crv") if kty != "RSA" else None
    alg = data.get("alg") or DEFAULT_ALG_BY_KEY.get((kty, curve))
    if alg not in SUPPORTED_ALGS:
        raise KeyFileError(path, f"unsupported algorithm {_shown(alg)} for a {kty} key")
    if SUPPORTED_ALGS[alg] != (kty, curve):
        on_curve = f" on {curve}" if curve else ""
        raise KeyFileError(path, f"algorithm {alg} does not match a {kty} key{on_curve}")
    if kty == "RSA":
        bits = op_key.key_size
        if bits < MIN_RSA_BITS:
            raise KeyFileError(path, f"RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")

    if not is_private:
        public = json.loads(key.export_public())
        public["alg"] = alg
        return public
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


def extend_key_set(raw, path, new_private_jwk):
    """A JWK Set (as a dict): the keys of a key file, then the new key, which is published but does not sign yet.

    The key file is checked as the service would load it first, so the result loads too.
    """
    key_set = parse_key_set(raw, path)
    if new_private_jwk["kid"] in key_set.kids:
        raise KeyFileError(path, f"already has a key with kid {_shown(new_private_jwk['kid'])}")
    data = json.loads(raw)
    existing = data["keys"] if "keys" in data and "kty" not in data else [data]
    return {"keys": [*existing, new_private_jwk]}


def write_private_jwk(path, data):
    """Write a private JWK readable by its owner only; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
