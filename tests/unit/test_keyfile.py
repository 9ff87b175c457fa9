"""Loading the private JWK: what signs, and every file the service must refuse."""

import json
import os
import pathlib
import re

import pytest
from jwcrypto import jwk

from tests.support import ALGS
from token_exchange.signing.keyfile import (
    MAX_KEY_FILE_BYTES,
    MAX_KID_CHARS,
    PRIVATE_PARAMS,
    KeyFileError,
    generate_private_jwk,
    load_key_set,
    parse_key_set,
    replace_key_file,
    write_private_jwk,
)


def write(tmp_path, content, name="key.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_generated_keys_load_with_their_alg_and_kid(tmp_path, alg):
    data = generate_private_jwk(alg, kid="test-kid")
    key = load_key_set(write(tmp_path, data)).signing_key
    assert (key.alg, key.kid) == (alg, "test-kid")
    assert not set(PRIVATE_PARAMS) & set(key.public_jwk)
    assert key.public_jwk["alg"] == alg


@pytest.mark.parametrize(
    "kty,params,alg",
    [
        ("RSA", {"size": 2048}, "RS256"),
        ("EC", {"crv": "P-256"}, "ES256"),
        ("OKP", {"crv": "Ed25519"}, "EdDSA"),
    ],
)
def test_missing_alg_is_inferred_from_the_key(tmp_path, kty, params, alg):
    data = json.loads(jwk.JWK.generate(kty=kty, kid="k", **params).export_private())
    assert "alg" not in data
    assert load_key_set(write(tmp_path, data)).signing_key.alg == alg


def bad_files(private_jwks):
    rsa = private_jwks["RS256"]
    public = {k: v for k, v in rsa.items() if k not in PRIVATE_PARAMS}
    small_rsa = json.loads(jwk.JWK.generate(kty="RSA", size=1024, kid="small").export_private())
    mismatched = dict(private_jwks["ES256"], x=private_jwks["RS256"]["n"][:43])
    return {
        "not JSON": ("{not json", "is not valid JSON"),
        "empty": ("", "is not valid JSON"),
        "array": ([rsa], "expected one private JWK"),
        "public only": (public, "public key"),
        "no kid": ({k: v for k, v in rsa.items() if k != "kid"}, "'kid'"),
        "empty kid": (dict(rsa, kid=""), "'kid'"),
        "kid too long": (dict(rsa, kid="k" * 257), r"json: kid has 257 characters; at most 256 are allowed$"),
        "no kty": ({k: v for k, v in rsa.items() if k != "kty"}, "kty"),
        "unknown kty": (dict(rsa, kty="oct"), "kty"),
        "alg of another key type": (dict(rsa, alg="ES256"), "does not match"),
        "EC alg on wrong curve": (dict(private_jwks["ES256"], alg="ES384"), "does not match"),
        "unsupported alg": (dict(rsa, alg="HS256"), "unsupported algorithm"),
        "alg a list": (dict(rsa, alg=["RS256"]), "unsupported algorithm"),
        "alg an object": (dict(rsa, alg={"name": "RS256"}), "unsupported algorithm"),
        "crv a list": (dict(private_jwks["ES256"], crv=["P-256"]), "not a valid EC private JWK"),
        "nested too deeply": ("[" * 100_000, "is not valid JSON"),
        "small RSA": (small_rsa, "1024 bits"),
        "broken private part": (dict(rsa, d="AAAA"), "private JWK"),
        "mismatched halves": (mismatched, "private JWK|verifiable"),
    }


def test_each_bad_key_file_is_refused_with_one_clear_line(tmp_path, private_jwks):
    for name, (content, problem) in bad_files(private_jwks).items():
        assert_refused_in_one_line(tmp_path, name, content, problem, [private_jwks["RS256"]])


def assert_refused_in_one_line(tmp_path, name, content, problem, private_jwks):
    """Loading content fails with one line naming the file and matching problem, quoting no
    private parameter of private_jwks."""
    path = write(tmp_path, content, name.replace(" ", "-") + ".json")
    with pytest.raises(KeyFileError) as raised:
        load_key_set(path)
    message = str(raised.value)
    assert message.startswith(f"private key file {path}: "), name
    assert "\n" not in message, name
    assert re.search(problem, message), (name, message)
    for private in private_jwks:
        for param in PRIVATE_PARAMS:
            assert not private.get(param) or private[param] not in message, name


def test_kid_of_the_longest_length_loads(tmp_path, private_jwks):
    kid = "k" * MAX_KID_CHARS
    keys = load_key_set(write(tmp_path, {"keys": [dict(private_jwks["ES256"], kid=kid)]}))
    assert keys.signing_key.kid == kid


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_set(str(tmp_path / "missing.json"))
    with pytest.raises(KeyFileError, match="is a directory"):
        load_key_set(str(tmp_path))


def test_a_symbolic_link_to_a_key_file_loads(tmp_path, private_jwks):
    link = tmp_path / "link.json"
    link.symlink_to(write(tmp_path, private_jwks["ES256"]))
    assert load_key_set(str(link)).signing_key.kid == private_jwks["ES256"]["kid"]


def test_replacing_a_key_file_through_a_symbolic_link_replaces_the_file_it_names(tmp_path, private_jwks):
    # Mounted secrets and configuration managers link to the key file: the link must keep naming it.
    target = write(tmp_path, private_jwks["ES256"], name="target.json")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    replace_key_file(str(link), private_jwks["EdDSA"])
    assert link.is_symlink() and os.readlink(link) == target
    assert json.loads(pathlib.Path(target).read_text()) == private_jwks["EdDSA"]


def test_a_device_is_refused_unread():
    # /dev/zero, endless, is refused by the built service and tool (tests/e2e), under a memory limit.
    with pytest.raises(KeyFileError) as raised:
        load_key_set("/dev/null")
    assert str(raised.value) == "private key file /dev/null: is a character device, not a regular file"


def padded_key_set(tmp_path, private_jwks, size):
    """A real JWK Set, padded with trailing blanks to size bytes."""
    content = json.dumps({"keys": list(private_jwks.values())}, indent=2)
    return write(tmp_path, content + " " * (size - len(content)))


def test_a_key_file_of_1_mib_loads(tmp_path, private_jwks):
    keys = load_key_set(padded_key_set(tmp_path, private_jwks, MAX_KEY_FILE_BYTES))
    assert len(keys.public_jwks) == len(private_jwks)


def test_a_key_file_over_1_mib_is_refused(tmp_path, private_jwks):
    path = padded_key_set(tmp_path, private_jwks, MAX_KEY_FILE_BYTES + 1)
    with pytest.raises(KeyFileError) as raised:
        load_key_set(path)
    assert str(raised.value) == f"private key file {path}: is larger than 1 MiB, the most a key file may hold"


def test_a_key_file_grown_past_1_mib_after_its_size_was_checked_is_refused(tmp_path, private_jwks, monkeypatch):
    path = padded_key_set(tmp_path, private_jwks, MAX_KEY_FILE_BYTES + 1)
    real_fstat = os.fstat

    def size_when_checked(fd):  # the file as it was before it grew
        info = real_fstat(fd)
        return os.stat_result((*info[:6], 100, *info[7:]))

    monkeypatch.setattr(os, "fstat", size_when_checked)
    with pytest.raises(KeyFileError, match="is larger than 1 MiB"):
        load_key_set(path)


def test_repr_never_shows_key_material(private_jwks):
    key = parse_key_set(json.dumps(private_jwks["RS256"])).signing_key
    assert private_jwks["RS256"]["d"] not in repr(key)


def test_written_key_is_private_to_its_owner_and_never_overwritten(tmp_path):
    path = tmp_path / "jwk.json"
    write_private_jwk(str(path), generate_private_jwk("EdDSA"))
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_private_jwk(str(path), generate_private_jwk("EdDSA"))


# Key sets for rotation: one private JWK or a JWK Set, the first private key signs.


def public_half(private):
    return {name: value for name, value in private.items() if name not in PRIVATE_PARAMS}


def test_one_private_jwk_signs_and_is_the_only_published_key(tmp_path, private_jwks):
    keys = load_key_set(write(tmp_path, private_jwks["ES256"]))
    assert keys.signing_key.kid == private_jwks["ES256"]["kid"]
    assert keys.published_kids == [private_jwks["ES256"]["kid"]]


def test_first_private_key_of_a_set_signs_and_every_key_is_published_public(tmp_path, private_jwks):
    previous = public_half(private_jwks["RS256"])
    members = [previous, private_jwks["EdDSA"], private_jwks["ES256"]]
    keys = load_key_set(write(tmp_path, {"keys": members}))
    assert (keys.signing_key.kid, keys.signing_key.alg) == (private_jwks["EdDSA"]["kid"], "EdDSA")
    # The signing key first, then the others in file order.
    assert keys.published_kids == [private_jwks[alg]["kid"] for alg in ("EdDSA", "RS256", "ES256")]
    for public in keys.public_jwks:
        assert public["use"] == "sig" and public["alg"] and public["kid"]
        assert not set(PRIVATE_PARAMS) & set(public)
        assert not jwk.JWK(**public).has_private
    assert keys.public_jwks[0] == keys.signing_key.public_jwk


def test_public_key_without_alg_is_published_with_the_inferred_alg(tmp_path, private_jwks):
    previous = {name: value for name, value in public_half(private_jwks["ES256"]).items() if name != "alg"}
    keys = load_key_set(write(tmp_path, {"keys": [private_jwks["RS256"], previous]}))
    assert keys.public_jwks[1]["alg"] == "ES256"


def bad_sets(private_jwks):
    rsa, ec, ed = (private_jwks[alg] for alg in ALGS)
    rsa_kid = rsa["kid"]
    small = json.loads(jwk.JWK.generate(kty="RSA", size=1024, kid="small", alg="RS256").export_private())
    return {
        "empty set": ({"keys": []}, r"JWK Set has no keys"),
        "keys not a list": ({"keys": rsa}, r"'keys' is not a list"),
        "member not an object": ({"keys": [rsa, "x"]}, r"keys\[1\] is not a JSON object"),
        "no private key": ({"keys": [public_half(rsa), public_half(ec)]}, r"no private key"),
        "duplicate kid": ({"keys": [rsa, dict(ec, kid=rsa_kid)]}, rf"keys\[1\] \(kid '{rsa_kid}'\): duplicate kid"),
        "duplicate kid of a public key": ({"keys": [rsa, public_half(rsa)]}, r"keys\[1\] .*duplicate kid"),
        "member with a kid too long": (
            {"keys": [rsa, dict(public_half(ec), kid="k" * 100_000)]},
            r"keys\[1\] \(kid \(too long to show\)\): kid has 100000 characters; at most 256 are allowed$",
        ),
        "member without kid": (
            {"keys": [rsa, {k: v for k, v in ec.items() if k != "kid"}]},
            r"keys\[1\]: JWK has no 'kid'",
        ),
        "broken later private key": (
            {"keys": [ed, dict(rsa, d="AAAA")]},
            rf"keys\[1\] \(kid '{rsa_kid}'\): is not a valid RSA private JWK",
        ),
        "broken public key": (
            {"keys": [ed, dict(public_half(ec), x="AAAA")]},
            r"keys\[1\] \(kid '[^']+'\): is not a valid EC public JWK",
        ),
        "mismatched alg": ({"keys": [ed, dict(public_half(rsa), alg="ES256")]}, r"keys\[1\] .*does not match"),
        "small RSA public key": ({"keys": [ed, public_half(small)]}, r"keys\[1\] \(kid 'small'\): .*1024 bits"),
        "unknown kty": ({"keys": [ed, {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, r"keys\[1\] .*'kty'"),
    }


def test_each_bad_key_set_is_refused_with_one_line_naming_the_key(tmp_path, private_jwks):
    for name, (content, problem) in bad_sets(private_jwks).items():
        assert_refused_in_one_line(tmp_path, name, content, problem, private_jwks.values())
