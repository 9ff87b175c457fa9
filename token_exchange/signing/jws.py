"""Compact JWS signing with the key object under a loaded JWK.

jwcrypto builds a JWS object, re-encodes the header and looks the key up
on every signature; for a 20-second token that overhead is a visible part
of the request. Here the protected header is encoded once and each call
signs with the cryptography key object directly. The output is the same
compact JWS jwcrypto would produce (consumers verify it with jwcrypto
against the JWKS), and jwcrypto stays in charge of loading keys.
"""

import binascii
import functools
from typing import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from token_exchange.signing.gojson import go_object

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
# RFC 7518 section 3.4: r and s each take the curve's size in bytes.
_EC_COORDINATE_BYTES = {"ES256": 32, "ES384": 48, "ES512": 66}


# base64url (RFC 4648 section 5) without padding, as JWS writes it; what
# base64.urlsafe_b64encode does, without its two layers of Python calls.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data):
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


class CompactSigner:
    """Signs payloads (bytes) as compact JWS strings with one SigningKey."""

    def __init__(self, signing_key, header):
        """header: the protected header (a dict), encoded once here."""
        self._signing_input_prefix = b64url(go_object(header).encode()) + b"."
        self._sign_bytes = _signature_function(signing_key.alg, signing_key.jwk.get_op_key("sign"))

    def sign(self, payload):
        signing_input = self._signing_input_prefix + b64url(payload)
        return (signing_input + b"." + b64url(self._sign_bytes(signing_input))).decode("ascii")


def _signature_function(alg, key):
    """A function from signing input to the raw JWS signature for alg."""
    if alg == "EdDSA":
        return key.sign
    family, bits = alg[:2], alg[2:]
    hash_algorithm = _HASHES[bits]()
    # partial() is C: one Python frame less per signature than a lambda.
    if family == "RS":
        return functools.partial(key.sign, padding=padding.PKCS1v15(), algorithm=hash_algorithm)
    if family == "PS":
        pss_padding = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
        return functools.partial(key.sign, padding=pss_padding, algorithm=hash_algorithm)
    if family == "ES":
        size = _EC_COORDINATE_BYTES[alg]
        ecdsa = ec.ECDSA(hash_algorithm)

        def sign_ec(data):
            r, s = decode_dss_signature(key.sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    raise ValueError(f"no signer for algorithm {alg}")
