"""The service's start-up logic in process (cli/service.py): the logged configuration hides secrets, and a
signing key some consumers cannot verify is warned about."""

import json
import logging
from types import SimpleNamespace

import pytest

from token_exchange.cli.service import REDACTED, effective_configuration, log_start_up
from token_exchange.signing.keyfile import load_key_set
from token_exchange.tools import generate_jwk


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
