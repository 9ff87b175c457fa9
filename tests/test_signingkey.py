"""Loading the private JWK: what signs, and every file the service must refuse."""

import json

import pytest
from jwcrypto import jwk

from token_exchange.signingkey import (
    PRIVATE_PARAMS,
    KeyFileError,
    generate_private_jwk,
    load_signing_key,
    parse_signing_key,
    write_private_jwk,
)


def write(tmp_path, content, name="key.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_generated_keys_load_with_their_alg_and_kid(tmp_path, alg):
    data = generate_private_jwk(alg, kid="test-kid")
    key = load_signing_key(write(tmp_path, data))
    assert (key.alg, key.kid) == (alg, "test-kid")
    assert not set(PRIVATE_PARAMS) & set(key.public_jwk)
    assert key.public_jwk["alg"] == alg


@pytest.mark.parametrize("kty,params,alg", [
    ("RSA", {"size": 2048}, "RS256"), ("EC", {"crv": "P-256"}, "ES256"), ("OKP", {"crv": "Ed25519"}, "EdDSA"),
])
def test_missing_alg_is_inferred_from_the_key(tmp_path, kty, params, alg):
    data = json.loads(jwk.JWK.generate(kty=kty, kid="k", **params).export_private())
    assert "alg" not in data
    assert load_signing_key(write(tmp_path, data)).alg == alg


def bad_files(private_jwks):
    rsa = private_jwks["RS256"]
    public = {k: v for k, v in rsa.items() if k not in PRIVATE_PARAMS}
    small_rsa = json.loads(jwk.JWK.generate(kty="RSA", size=1024, kid="small").export_private())
    mismatched = dict(private_jwks["ES256"], x=private_jwks["RS256"]["n"][:43])
    return {
        "not JSON": ("{not json", "is not valid JSON"),
        "empty": ("", "is not valid JSON"),
        "array": ([rsa], "expected one private JWK"),
        "JWK Set": ({"keys": [rsa]}, "JWK Set"),
        "public only": (public, "public key"),
        "no kid": ({k: v for k, v in rsa.items() if k != "kid"}, "'kid'"),
        "empty kid": (dict(rsa, kid=""), "'kid'"),
        "no kty": ({k: v for k, v in rsa.items() if k != "kty"}, "kty"),
        "unknown kty": (dict(rsa, kty="oct"), "kty"),
        "alg of another key type": (dict(rsa, alg="ES256"), "does not match"),
        "EC alg on wrong curve": (dict(private_jwks["ES256"], alg="ES384"), "does not match"),
        "unsupported alg": (dict(rsa, alg="HS256"), "unsupported algorithm"),
        "small RSA": (small_rsa, "1024 bits"),
        "broken private part": (dict(rsa, d="AAAA"), "private JWK"),
        "mismatched halves": (mismatched, "private JWK|verifiable"),
    }


def test_each_bad_key_file_is_refused_with_one_clear_line(tmp_path, private_jwks):
    for name, (content, problem) in bad_files(private_jwks).items():
        path = write(tmp_path, content, name.replace(" ", "-") + ".json")
        with pytest.raises(KeyFileError) as raised:
            load_signing_key(path)
        message = str(raised.value)
        assert message.startswith(f"private key file {path}: "), name
        assert "\n" not in message, name
        assert __import__("re").search(problem, message), (name, message)
        for param in PRIVATE_PARAMS:
            value = private_jwks["RS256"].get(param)
            assert not value or value not in message, name


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_signing_key(str(tmp_path / "missing.json"))
    with pytest.raises(KeyFileError, match="is a directory"):
        load_signing_key(str(tmp_path))


def test_repr_never_shows_key_material(private_jwks):
    key = parse_signing_key(json.dumps(private_jwks["RS256"]))
    assert private_jwks["RS256"]["d"] not in repr(key)


def test_written_key_is_private_to_its_owner_and_never_overwritten(tmp_path):
    path = tmp_path / "jwk.json"
    write_private_jwk(str(path), generate_private_jwk("EdDSA"))
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_private_jwk(str(path), generate_private_jwk("EdDSA"))
