"""Loading the private JWK: what signs, and every file the service must refuse."""

import json

import pytest
from jwcrypto import jwk

from token_exchange.signingkey import (
    PRIVATE_PARAMS,
    KeyFileError,
    extend_key_set,
    generate_private_jwk,
    load_key_set,
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
        "array": ([rsa], "does not hold a JSON object"),
        "JWK Set where one private JWK is expected": ({"keys": [rsa]}, "JWK Set"),
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


def public_half(data):
    return {name: value for name, value in data.items() if name not in PRIVATE_PARAMS}


def test_one_private_jwk_is_a_set_of_one(tmp_path, private_jwks):
    key_set = load_key_set(write(tmp_path, private_jwks["EdDSA"]))
    assert key_set.signing_key.kid == private_jwks["EdDSA"]["kid"]
    assert key_set.public_jwks == [key_set.signing_key.public_jwk]


def test_first_private_key_of_a_set_signs_and_every_key_is_published(tmp_path, private_jwks):
    retired_public = public_half(private_jwks["RS256"])
    keys = [retired_public, private_jwks["ES256"], private_jwks["EdDSA"]]
    key_set = load_key_set(write(tmp_path, {"keys": keys}))
    assert key_set.signing_key.kid == private_jwks["ES256"]["kid"]
    # The signer first, then the others in file order; never a private parameter.
    assert key_set.kids == [private_jwks[alg]["kid"] for alg in ("ES256", "RS256", "EdDSA")]
    for published in key_set.public_jwks:
        assert not set(PRIVATE_PARAMS) & set(published)
        assert jwk.JWK(**published).has_private is False
    assert key_set.public_jwks[1]["alg"] == "RS256"


@pytest.mark.parametrize("case", ["duplicate kid", "no private key", "empty", "not a list", "invalid public key",
                                  "entry not an object", "public key without kid"])
def test_bad_key_sets_are_refused_with_one_clear_line(tmp_path, private_jwks, case):
    rsa, ec = private_jwks["RS256"], private_jwks["ES256"]
    content, problem = {
        "duplicate kid": ([rsa, dict(ec, kid=rsa["kid"])], "two keys with kid"),
        "no private key": ([public_half(rsa), public_half(ec)], "no private key"),
        "empty": ([], "has no keys"),
        "not a list": ({"kty": "RSA"}, "has no keys"),
        "invalid public key": ([rsa, dict(public_half(ec), x="AAAA")], "JWK Set key 2: is not a valid EC public"),
        "entry not an object": ([rsa, "key"], "JWK Set key 2 is not a JSON object"),
        "public key without kid": ([rsa, {k: v for k, v in public_half(ec).items() if k != "kid"}],
                                   "JWK Set key 2: JWK has no 'kid'"),
    }[case]
    path = write(tmp_path, {"keys": content})
    with pytest.raises(KeyFileError) as raised:
        load_key_set(path)
    message = str(raised.value)
    assert message.startswith(f"private key file {path}: ") and "\n" not in message
    assert problem in message, message
    for data in (rsa, ec):
        for param in PRIVATE_PARAMS:
            assert not data.get(param) or data[param] not in message


def test_extending_a_key_set_keeps_its_signer(private_jwks):
    raw = json.dumps(private_jwks["RS256"])
    new = generate_private_jwk("ES256", kid="new")
    extended = extend_key_set(raw, "<key>", new)
    assert extended == {"keys": [private_jwks["RS256"], new]}
    with pytest.raises(KeyFileError, match="already has a key with kid 'new'"):
        extend_key_set(json.dumps(extended), "<key>", generate_private_jwk("EdDSA", kid="new"))
