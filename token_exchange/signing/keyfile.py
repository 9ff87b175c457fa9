"""The private JWK that signs tokens and the public JWKs we publish: loading, checking, generating.

The file holds one private JWK, as the Go service reads it, or a JWK Set
{"keys": [...]} for rotation: its first private key signs, every key of the
set (private or public-only) is published as a public key, so tokens signed
by a previous key keep verifying while it stays in the set. A signing key's "kid" goes
into every token header and its "alg" chooses the signature algorithm; when
"alg" is absent it is inferred from the key (RSA: RS256, P-256: ES256,
Ed25519: EdDSA). Error messages name the file and the problem, never any
key material.
"""

import json
import os
import stat
import tempfile
import uuid
from dataclasses import dataclass

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
DEFAULT_ALG_BY_KEY = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("EC", "P-521"): "ES512",
    ("OKP", "Ed25519"): "EdDSA",
}
GENERATE_ALGS = ("RS256", "ES256", "EdDSA")
# Who verifies our tokens, and the algorithms each can verify. In production locate and autojoin sit
# behind Cloud Endpoints (ESPv1), which verifies the token before they see it.
CONSUMER_ALGS = {
    "Cloud Endpoints (ESP) in front of locate and autojoin": frozenset(("RS256", "ES256")),
    "locate's direct JWKS verifier": frozenset(("RS256", "ES256", "EdDSA")),
}
MIN_RSA_BITS = 2048
# A JWK Set of ten RSA 4096 keys is under 40 KB: 1 MiB fits any real key file, and a device, a huge file or
# one that keeps growing is refused instead of read into memory.
MAX_KEY_FILE_BYTES = 1 << 20
# A kid goes into every token header (Go's service takes any length). Real kids are UUIDs (36 characters)
# or dates; 256 characters leave room for any naming scheme, a cloud KMS key version's resource name
# included, and keep a header small.
MAX_KID_CHARS = 256
PRIVATE_PARAMS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def consumers_refusing(alg):
    """The consumers (CONSUMER_ALGS) that cannot verify tokens signed with alg."""
    return [consumer for consumer, algs in CONSUMER_ALGS.items() if alg not in algs]


def consumer_warning(alg):
    """One line warning that some consumers cannot verify alg, or None when all of them can."""
    refusing = consumers_refusing(alg)
    if not refusing:
        return None
    return f"{alg} tokens cannot be verified by {' or '.join(refusing)}: use RS256 or ES256 in production"


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
        self.public_jwk = _published(private_jwk, alg)

    def __repr__(self):
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


@dataclass(frozen=True)
class KeySet:
    """What the key file gives the service: the key that signs, and the public JWKs the JWKS serves
    (the signing key's first, then every other key of the set, private ones reduced to public)."""

    signing_key: SigningKey
    public_jwks: list

    @property
    def published_kids(self):
        return [public["kid"] for public in self.public_jwks]


def load_key_set(path):
    """Read the signing key file, one private JWK or a JWK Set; raise KeyFileError when unusable."""
    return parse_key_set(read_key_file(path), path)


def parse_key_set(raw, path="<key>"):
    """The KeySet in raw: one private JWK (it signs and is published), or a JWK Set {"keys": [...]}."""
    data = _parse_json(raw, path)
    if "keys" not in data or "kty" in data:
        signing_key = _private_key(data, path, "")
        return KeySet(signing_key, [signing_key.public_jwk])
    members = data["keys"]
    if not isinstance(members, list):
        raise KeyFileError(path, "JWK Set 'keys' is not a list")
    if not members:
        raise KeyFileError(path, "JWK Set has no keys")
    published = []
    signing_key = None
    seen_kids = set()
    for position, member in enumerate(members):
        where = f"keys[{position}]"
        if not isinstance(member, dict):
            raise KeyFileError(path, f"{where} is not a JSON object")
        kid = member.get("kid")
        if isinstance(kid, str) and kid:
            where += f" (kid {_kid_shown(kid)})"
            if kid in seen_kids:
                raise KeyFileError(path, f"{where}: duplicate kid; each key needs its own")
            seen_kids.add(kid)
        if "d" in member:
            key = _private_key(member, path, where + ": ")
            if signing_key is None:
                signing_key = key
                continue
            published.append(key.public_jwk)
        else:
            published.append(_public_key(member, path, where + ": "))
    if signing_key is None:
        raise KeyFileError(path, "JWK Set has no private key; its first private key signs")
    # The signing key first, so whoever reads the JWKS sees which key signs.
    return KeySet(signing_key, [signing_key.public_jwk, *published])


def read_key_file(path):
    """The bytes of a key file; KeyFileError saying why when it cannot be read.

    Only a regular file of at most MAX_KEY_FILE_BYTES is read: a FIFO, a device such as /dev/zero or a
    huge file is refused before any reading (a blocked read could not even be stopped: start-up holds
    stop signals back).
    """
    try:
        # O_NONBLOCK: opening a FIFO would wait for a writer; for a regular file it changes nothing.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except PermissionError:
        raise KeyFileError(path, "cannot be read: permission denied") from None
    except OSError as e:
        raise KeyFileError(path, f"cannot be read: {e.strerror or type(e).__name__}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise KeyFileError(path, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(path, f"is {_file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise _too_large(path)
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)  # the file may have grown since fstat
    except OSError as e:
        raise KeyFileError(path, f"cannot be read: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise _too_large(path)
    return raw


def _too_large(path):
    return KeyFileError(path, f"is larger than {MAX_KEY_FILE_BYTES >> 20} MiB, the most a key file may hold")


def _file_kind(mode):
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _parse_json(raw, path):
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise KeyFileError(path, f"is not valid JSON{where}") from None
    except RecursionError:
        raise KeyFileError(path, "is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise KeyFileError(path, "does not hold a JSON object (expected one private JWK or a JWK Set)")
    return data


def _private_key(data, path, where):
    """Check one private JWK; where ("keys[2] (kid 'x'): " or "") prefixes each problem."""
    alg, key = _checked_jwk(data, path, where, need_private=True)
    signing_key = SigningKey(key, alg)
    _check_signs(signing_key, path, where)
    return signing_key


def _public_key(data, path, where):
    """Check one public-only JWK of a set; return it as published."""
    alg, key = _checked_jwk(data, path, where, need_private=False)
    return _published(key, alg)


def _checked_jwk(data, path, where, need_private):
    """The common checks of a JWK: type, kid, algorithm, size. Return (alg, jwcrypto key)."""
    kty = data.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeyFileError(path, f"{where}unsupported or missing key type 'kty' {_shown(kty)}")
    if not data.get("kid") or not isinstance(data.get("kid"), str):
        raise KeyFileError(path, f"{where}JWK has no 'kid' (Key ID)")
    problem = kid_length_problem(data["kid"])
    if problem:
        raise KeyFileError(path, where + problem)
    if need_private and "d" not in data:
        raise KeyFileError(path, f"{where}holds a public key; a private key is needed to sign")
    kind = "private" if need_private else "public"
    try:
        key = jwk.JWK(**data)
        # Building the key object is when its parameters get checked.
        op_key = key.get_op_key("sign" if need_private else "verify")
    except Exception:  # jwcrypto's messages may quote parameters: never show them
        raise KeyFileError(path, f"{where}is not a valid {kty} {kind} JWK") from None
    if key.has_private != need_private:
        raise KeyFileError(path, f"{where}is not a valid {kty} {kind} JWK")

    curve = data.get("crv") if kty != "RSA" else None
    alg = data.get("alg") or DEFAULT_ALG_BY_KEY.get((kty, curve))
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGS:  # a list or object cannot even be looked up
        raise KeyFileError(path, f"{where}unsupported algorithm {_shown(alg)} for a {kty} key")
    if SUPPORTED_ALGS[alg] != (kty, curve):
        on_curve = f" on {curve}" if curve else ""
        raise KeyFileError(path, f"{where}algorithm {alg} does not match a {kty} key{on_curve}")
    if kty == "RSA":
        bits = op_key.key_size
        if bits < MIN_RSA_BITS:
            raise KeyFileError(path, f"{where}RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
    return alg, key


def _published(key, alg):
    """The public JWK consumers get: public parameters, kid, alg and use=sig, nothing else."""
    public = json.loads(key.export_public())
    public.pop("key_ops", None)
    public.update(alg=alg, use="sig")
    return public


def _check_signs(signing_key, path, where=""):
    """Sign and verify once, so a key whose halves do not match fails now."""
    try:
        token = jws.JWS(b"start-up check")
        token.add_signature(signing_key.jwk, alg=signing_key.alg, protected={"alg": signing_key.alg})
        check = jws.JWS()
        check.deserialize(token.serialize(compact=True))
        check.verify(jwk.JWK(**signing_key.public_jwk), alg=signing_key.alg)
    except Exception:
        raise KeyFileError(path, f"{where}key cannot produce a verifiable signature") from None


def kid_length_problem(kid):
    """Why kid is too long to go into token headers, or None."""
    if len(kid) > MAX_KID_CHARS:
        return f"kid has {len(kid)} characters; at most {MAX_KID_CHARS} are allowed"
    return None


def _kid_shown(kid):
    """A kid is no secret, but it comes from a file: show it only when short and printable."""
    if len(kid) > 80:
        return "(too long to show)"
    return repr(kid) if kid.isprintable() else "(unprintable)"


def _shown(value):
    return repr(value) if isinstance(value, str) and len(value) <= 20 else "(missing)" if value is None else "(invalid)"


def generate_private_jwk(alg="RS256", kid=None):
    """A new private JWK (as a dict) in the format load_key_set reads."""
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


def replace_key_file(path, data):
    """Replace a key file atomically: a reader sees the old content or the new, never half of it.

    The new file keeps the old one's group and its owner and group permissions (never more than
    0640): a key made readable by the service's group stays readable by it after a rotation, or
    the next start would fail. A symbolic link is followed: the file it names is replaced, and the
    link stays, still naming it.
    """
    path = os.path.realpath(path)
    directory, name = os.path.split(path)
    old = os.stat(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mode 0600
    try:
        if old.st_gid != os.getegid():
            try:
                os.fchown(fd, -1, old.st_gid)
            except PermissionError:  # not one of the caller's groups: the file gets the caller's
                pass
        os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o640 | 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
