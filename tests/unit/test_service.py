"""The service's start-up logic in process (cli/service.py): the logged configuration hides secrets."""

import json
from types import SimpleNamespace

from token_exchange.cli.service import REDACTED, effective_configuration


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
