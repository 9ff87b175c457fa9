"""The service's start-up and reload logic in process (cli/service.py): the logged configuration hides
secrets, a signing key some consumers cannot verify is warned about, and a reload swaps the keys in use
or keeps them, with one line either way."""

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from token_exchange.cli.service import REDACTED, effective_configuration, log_start_up, reload_signing_keys
from token_exchange.signing.keyfile import PRIVATE_PARAMS, KeyFileError, generate_private_jwk, load_key_set
from token_exchange.tools import generate_jwk
from token_exchange.web.signingkeys import SigningKeys


def test_logged_configuration_redacts_secrets():
    config = SimpleNamespace(
        port=8080,
        private_key_path="/secrets/jwk-priv.json",
        store="datastore",
        log_format=None,
        db_password="hunter2-secret-value",
        api_token="tok-secret-value",
    )
    environ = {
        "DATASTORE_EMULATOR_HOST": "http://user:pa55word-secret@localhost:8081",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/sa.json",
        "UNRELATED_SECRET": "never-logged-value",
    }
    settings = effective_configuration(config, environ)
    assert settings["port"] == 8080
    assert settings["private_key_path"] == "/secrets/jwk-priv.json"
    assert settings["log_format"] == "auto"
    assert settings["db_password"] == REDACTED
    assert settings["api_token"] == REDACTED
    assert settings["GOOGLE_APPLICATION_CREDENTIALS"] == REDACTED
    assert settings["DATASTORE_EMULATOR_HOST"] == f"http://user:{REDACTED}@localhost:8081"
    text = json.dumps(settings)
    for secret in ("hunter2", "tok-secret", "pa55word", "never-logged"):
        assert secret not in text


@pytest.mark.parametrize("alg, warned", [("RS256", False), ("ES256", False), ("EdDSA", True)])
def test_start_up_warns_of_a_key_cloud_endpoints_cannot_verify(key_file, caplog, alg, warned):
    caplog.set_level(logging.INFO)
    path = key_file(alg)
    keys = load_key_set(str(path))
    config = SimpleNamespace(private_key_path=str(path), log_format=None)
    log_start_up(config, keys)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert warnings == [
            f"signing key kid={keys.signing_key.kid}: EdDSA tokens cannot be verified by Cloud Endpoints (ESP) "
            "in front of locate and autojoin: use RS256 or ES256 in production"
        ]
    else:
        assert warnings == []


@pytest.mark.parametrize("alg, warned", [("RS256", False), ("ES256", False), ("EdDSA", True)])
def test_generate_jwk_warns_of_a_key_cloud_endpoints_cannot_verify(tmp_path, capsys, alg, warned):
    out = tmp_path / "jwk.json"
    generate_jwk.main(["-alg", alg, "-out", str(out)])
    assert load_key_set(str(out)).signing_key.alg == alg
    err = capsys.readouterr().err
    if warned:
        assert err == (
            "generate-jwk: warning: EdDSA tokens cannot be verified by Cloud Endpoints (ESP) in front of locate "
            "and autojoin: use RS256 or ES256 in production\n"
        )
    else:
        assert err == ""

    # Promoting such a key in a set says the same; adding one too.
    generate_jwk.main(["-set", str(out), "-add", "-alg", "EdDSA", "-kid", "second"])
    assert "warning: EdDSA" in capsys.readouterr().err
    generate_jwk.main(["-set", str(out), "-promote", "second"])
    assert "warning: EdDSA" in capsys.readouterr().err


def public_half(private):
    return {name: value for name, value in private.items() if name not in PRIVATE_PARAMS}


def reload(path, signing_keys, caplog):
    """Reload as SIGHUP does; the log records it left, as (level name, message)."""
    caplog.clear()
    caplog.set_level(logging.INFO)
    asyncio.run(reload_signing_keys(str(path), signing_keys))
    return [(r.levelname, r.getMessage()) for r in caplog.records]


@pytest.fixture
def old_and_new():
    return generate_private_jwk("RS256", kid="old"), generate_private_jwk("ES256", kid="new")


def test_a_reload_follows_the_runbook_with_one_line_a_step(tmp_path, caplog, old_and_new):
    old, new = old_and_new
    path = tmp_path / "jwk-priv.json"
    path.write_text(json.dumps(old))
    signing_keys = SigningKeys(load_key_set(str(path)))
    steps = [
        ({"keys": [old, new]}, "old", "RS256", "old, new"),  # publish
        ({"keys": [new, old]}, "new", "ES256", "new, old"),  # switch
        ({"keys": [new, public_half(old)]}, "new", "ES256", "new, old"),  # the old key public only
        ({"keys": [new]}, "new", "ES256", "new"),  # retire
    ]
    logged = []
    for data, kid, alg, published in steps:
        path.write_text(json.dumps(data))
        logged += reload(path, signing_keys, caplog)
        assert logged[-1:] == [
            (
                "INFO",
                f"signing key file reloaded: signing with key kid={kid} alg={alg} from {path}; "
                f"JWKS publishes kids {published}",
            )
        ]
        assert signing_keys.current.key_set.published_kids == published.split(", ")
        assert signing_keys.current.issuer.signing_key.kid == kid
    assert len(logged) == len(steps)
    for private in (old, new):
        assert not any(private["d"] in message for _, message in logged)


def test_a_reload_that_skips_a_wait_of_the_runbook_says_so(tmp_path, caplog, old_and_new):
    old, new = old_and_new
    path = tmp_path / "jwk-priv.json"
    path.write_text(json.dumps(old))
    signing_keys = SigningKeys(load_key_set(str(path)))
    path.write_text(json.dumps(new))  # signs at once with a key never published, and drops the old one
    lines = reload(path, signing_keys, caplog)
    assert lines[0][0] == "INFO" and "signing with key kid=new" in lines[0][1]
    assert [level for level, _ in lines[1:]] == ["WARNING", "WARNING"]
    assert lines[1][1].startswith("kid=new signs from now on but was not published before this reload")
    assert lines[2][1].startswith("kid=old signed until this reload and is no longer published")
    assert signing_keys.current.issuer.signing_key.kid == "new"


@pytest.mark.parametrize(
    "content",
    [None, "not json", '{"keys": []}', "public key"],
    ids=["missing", "not JSON", "empty set", "public key"],
)
def test_an_unusable_file_keeps_the_keys_in_use_with_one_error_line(tmp_path, caplog, old_and_new, content):
    old, new = old_and_new
    path = tmp_path / "jwk-priv.json"
    path.write_text(json.dumps(old))
    signing_keys = SigningKeys(load_key_set(str(path)))
    in_use = signing_keys.current
    if content is None:
        path.unlink()
    else:
        path.write_text(json.dumps(public_half(new)) if content == "public key" else content)
    with pytest.raises(KeyFileError) as start_up:
        load_key_set(str(path))
    assert reload(path, signing_keys, caplog) == [
        (
            "ERROR",
            f"signing key file not reloaded: {start_up.value}; "
            f"still signing with key kid=old alg=RS256 from {path}; JWKS publishes kids old",
        )
    ]
    assert signing_keys.current is in_use
