"""The service's configuration (cli/config.py, cli/flags.py): the flag table of docs/configuration.md, Go flag
spellings, environment variables, and one clear line on stderr (exit 2) for bad input."""

import os

import pytest

from token_exchange.cli.config import build_parser, parse_config
from token_exchange.cli.flags import MAX_WORKERS

# The configuration table of docs/configuration.md, plus -store and the operational flags:
# (flag, env var, attribute, default, another valid value, parsed).
FLAGS = [
    ("port", "PORT", "port", 8080, "9000", 9000),
    (
        "private-key-path",
        "PRIVATE_KEY_PATH",
        "private_key_path",
        "/secrets/jwk-priv.json",
        "/tmp/k.json",
        "/tmp/k.json",
    ),
    ("platform-ns", "PLATFORM_NS", "platform_ns", "platform-credentials", "other-platform", "other-platform"),
    (
        "client-integration-ns",
        "CLIENT_INTEGRATION_NS",
        "client_integration_ns",
        "client-integration",
        "other-integrations",
        "other-integrations",
    ),
    ("project-id", "PROJECT_ID", "project_id", "mlab-sandbox", "mlab-oti", "mlab-oti"),
    (
        "prometheusx.listen-address",
        "PROMETHEUSX_LISTEN_ADDRESS",
        "prometheusx_listen_address",
        ":9990",
        "127.0.0.1:9991",
        "127.0.0.1:9991",
    ),
    ("store", "STORE", "store", "datastore", "sqlite:/var/lib/keys.db", "sqlite:/var/lib/keys.db"),
    ("store-timeout", "STORE_TIMEOUT", "store_timeout", 3.0, "0.5", 0.5),
    ("key-cache-ttl", "KEY_CACHE_TTL", "key_cache_ttl", 5.0, "0", 0.0),
    ("max-pending-verifications", "MAX_PENDING_VERIFICATIONS", "max_pending_verifications", 64, "8", 8),
    ("trusted-proxies", "TRUSTED_PROXIES", "trusted_proxies", 0, "1", 1),
    ("log-format", "LOG_FORMAT", "log_format", None, "text", "text"),
    ("access-log", "ACCESS_LOG", "access_log", "errors", "all", "all"),
    ("shutdown-grace", "SHUTDOWN_GRACE", "shutdown_grace", 30.0, "5", 5.0),
    ("workers", "WORKERS", "workers", 1, "2", 2),
]
FLAG_IDS = [flag for flag, *_ in FLAGS]
# Flag spellings, and the environment.

SPELLINGS = {
    "-flag value": lambda flag, value: [f"-{flag}", value],
    "-flag=value": lambda flag, value: [f"-{flag}={value}"],
    "--flag value": lambda flag, value: [f"--{flag}", value],
    "--flag=value": lambda flag, value: [f"--{flag}={value}"],
}


def defaults():
    return {attribute: default for _, _, attribute, default, _, _ in FLAGS}


def assert_config(config, **changed):
    assert vars(config) == {**defaults(), **changed}


def refused(capsys, argv, env=None):
    """Parse, expecting exit 2 and one error line; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, {} if env is None else env)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("token-exchange: error: ")
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_defaults_are_those_of_the_spec():
    assert vars(parse_config([], {})) == {
        "port": 8080,
        "private_key_path": "/secrets/jwk-priv.json",
        "platform_ns": "platform-credentials",
        "client_integration_ns": "client-integration",
        "project_id": "mlab-sandbox",
        "prometheusx_listen_address": ":9990",
        "store": "datastore",
        "store_timeout": 3.0,
        "key_cache_ttl": 5.0,
        "max_pending_verifications": 64,
        "trusted_proxies": 0,  # X-Forwarded-For is never read
        "log_format": None,  # chosen at start-up: text on a terminal, else json
        "access_log": "errors",  # requests answered 4xx or 5xx
        "shutdown_grace": 30.0,
        "workers": 1,
    }


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "", str(MAX_WORKERS + 1), "1000000"])
def test_invalid_worker_count_is_refused(capsys, value):
    assert "invalid number" in refused(capsys, ["-workers", value])


def test_worker_count_up_to_the_bound_is_taken():
    # The bound stops a typo from forking a million processes, and never refuses one worker per CPU.
    assert MAX_WORKERS >= 64
    assert (os.cpu_count() or 1) <= MAX_WORKERS
    assert parse_config(["-workers", str(MAX_WORKERS)], env={}).workers == MAX_WORKERS


@pytest.mark.parametrize("value", ["xml", "JSON", ""])
def test_invalid_log_format_is_refused(capsys, value):
    assert "invalid choice" in refused(capsys, ["-log-format", value])


@pytest.mark.parametrize("value", ["none", "ALL", "error", ""])
def test_invalid_access_log_choice_is_refused(capsys, value):
    assert "invalid choice" in refused(capsys, ["-access-log", value])


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "601", "soon", ""])
def test_invalid_store_timeout_is_refused(capsys, value):
    assert "invalid duration" in refused(capsys, ["-store-timeout", value])


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "601", "soon", ""])
def test_invalid_key_cache_ttl_is_refused(capsys, value):
    assert "invalid duration" in refused(capsys, ["-key-cache-ttl", value])


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "many", ""])
def test_invalid_max_pending_verifications_is_refused(capsys, value):
    assert "invalid number" in refused(capsys, ["-max-pending-verifications", value])


@pytest.mark.parametrize("value,count", [("0", 0), ("2", 2), ("10", 10)])
def test_trusted_proxies_range(value, count):
    assert parse_config(["-trusted-proxies", value], {}).trusted_proxies == count


@pytest.mark.parametrize("value", ["-1", "11", "1.5", "one", " 1", "", "1" + "0" * 30])
def test_invalid_trusted_proxies_is_refused(capsys, value):
    assert "expected a whole number from 0 to 10" in refused(capsys, ["-trusted-proxies", value])


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("flag,env,attribute,default,value,parsed", FLAGS, ids=FLAG_IDS)
def test_every_flag_in_every_go_spelling(flag, env, attribute, default, value, parsed, spelling):
    assert_config(parse_config(SPELLINGS[spelling](flag, value), {}), **{attribute: parsed})


@pytest.mark.parametrize("flag,env,attribute,default,value,parsed", FLAGS, ids=FLAG_IDS)
def test_every_environment_variable(flag, env, attribute, default, value, parsed):
    assert_config(parse_config([], {env: value}), **{attribute: parsed})


def test_environment_defaults_to_the_process_environment(monkeypatch):
    for _, env, *_ in FLAGS:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("PROJECT_ID", "mlab-oti")
    assert_config(parse_config([]), port=9000, project_id="mlab-oti")


def test_all_environment_variables_together():
    env = {env: value for _, env, _, _, value, _ in FLAGS}
    assert vars(parse_config([], env)) == {attribute: parsed for _, _, attribute, _, _, parsed in FLAGS}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("flag,env,attribute,default,value,parsed", FLAGS, ids=FLAG_IDS)
def test_command_line_wins_over_environment(flag, env, attribute, default, value, parsed, spelling):
    # The environment holds another valid value; the flag's own value must win.
    config = parse_config(SPELLINGS[spelling](flag, value), {env: str(default)})
    assert_config(config, **{attribute: parsed})


def test_command_line_wins_over_environment_for_one_flag_only():
    config = parse_config(["-port", "9000"], {"PORT": "7000", "PROJECT_ID": "mlab-oti"})
    assert_config(config, port=9000, project_id="mlab-oti")


def test_environment_variable_names_are_exact():
    # Only the documented names count: not lower case, not with dashes or dots.
    env = {
        "port": "1",
        "Port": "2",
        "PRIVATE-KEY-PATH": "/x",
        "PROMETHEUSX.LISTEN_ADDRESS": ":1",
        "TOKEN_EXCHANGE_PORT": "3",
    }
    assert_config(parse_config([], env))


def test_help_names_each_flags_variable_and_default_once():
    text = " ".join(build_parser().format_help().split())  # as one line, whatever the wrapping
    for flag, env, _, default, _, _ in FLAGS:
        entry = text.split(f"--{flag} ", 1)[1].split(" -", 1)[0]
        assert f"[env var: {env}]" in entry, flag
        assert entry.count("(default:") == 1, entry
        if default is not None:
            assert f"(default: {default})" in entry, flag


def test_flag_given_twice_takes_the_last_value():
    assert parse_config(["-port", "1", "--port=2"], {}).port == 2


def test_empty_string_values_are_kept_for_text_flags():
    assert parse_config(["-project-id="], {}).project_id == ""


# -store


@pytest.mark.parametrize(
    "value", ["datastore", "sqlite:/var/lib/keys.db", "sqlite:keys.db", "sqlite:./a b/k.db", "sqlite::memory:"]
)
def test_store_accepts_datastore_and_sqlite_path(value):
    assert parse_config(["-store", value], {}).store == value
    assert parse_config([], {"STORE": value}).store == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sqlite:",
        "sqlite",
        "sqlite/keys.db",
        "Datastore",
        "datastore ",
        "postgres://db/keys",
        "file:/keys.db",
        "memory",
    ],
)
def test_store_refuses_anything_else(capsys, value):
    line = refused(capsys, ["-store", value])
    assert "store" in line and repr(value) in line
    line = refused(capsys, [], {"STORE": value})
    assert "store" in line and repr(value) in line


# -port


@pytest.mark.parametrize("value,port", [("0", 0), ("1", 1), ("8080", 8080), ("65535", 65535)])
def test_port_range(value, port):
    assert parse_config(["-port", value], {}).port == port


@pytest.mark.parametrize("value", ["", "x", "80x", "80.0", "1e3", "-1", "65536", "99999999999999999999"])
def test_invalid_port_is_refused(capsys, value):
    line = refused(capsys, [f"-port={value}"])
    assert "port" in line and repr(value) in line
    line = refused(capsys, [], {"PORT": value})
    assert "port" in line and repr(value) in line


def test_flag_without_its_value_is_refused(capsys):
    assert "-port" in refused(capsys, ["-port"])
    assert "-store" in refused(capsys, ["-port", "1", "-store"])


# Unknown flags and arguments


@pytest.mark.parametrize(
    "argv",
    [
        ["-foo"],
        ["--foo=1"],
        ["-foo", "1"],
        ["-port-number", "1"],
        ["extra"],
        ["-port", "1", "extra"],
        ["-private-key"],
        ["-key-path", "/x"],
    ],
)
def test_unknown_flag_or_argument_is_refused(capsys, argv):
    line = refused(capsys, argv)
    assert argv[-1] in line or argv[0] in line


@pytest.mark.parametrize(
    "argv",
    [
        ["-por", "1"],
        ["-s", "sqlite:/x"],
        ["-platform", "x"],
        ["-proj", "x"],
        ["-prometheusx", ":1"],
        ["-private-key", "/x"],
        ["--por", "1"],
    ],
    ids=" ".join,
)
def test_abbreviated_flag_is_unknown(capsys, argv):
    # Go's flag package knows no abbreviations: "flag provided but not defined: -por".
    line = refused(capsys, argv)
    assert argv[0] in line


# -prometheusx.listen-address


@pytest.mark.parametrize(
    "value", [":9990", ":0", "localhost:9990", "0.0.0.0:9990", "127.0.0.1:65535", "[::1]:9990", "[::]:9990"]
)
def test_listen_address_accepts_host_and_port(value):
    assert parse_config(["-prometheusx.listen-address", value], {}).prometheusx_listen_address == value
    assert parse_config([], {"PROMETHEUSX_LISTEN_ADDRESS": value}).prometheusx_listen_address == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "9990",
        "localhost",
        ":",
        "localhost:",
        ":x",
        ":70000",
        ":-1",
        "localhost:http",
        "::1:9990",
        "[::1:9990",
        "::1]:9990",
    ],
)
def test_listen_address_without_a_valid_port_is_refused(capsys, value):
    line = refused(capsys, [f"-prometheusx.listen-address={value}"])
    assert "listen address" in line or "port" in line
    assert "prometheusx.listen-address" in line
    refused(capsys, [], {"PROMETHEUSX_LISTEN_ADDRESS": value})


@pytest.mark.parametrize("host", ["a" * 64, "a..b", ".example", "example.."])
def test_listen_address_whose_host_is_no_host_name_is_refused(capsys, host):
    # The resolver would fail on these later, with a traceback in place of this line.
    line = refused(capsys, [f"-prometheusx.listen-address={host}:9990"])
    assert "is no host name" in line
