"""scripts/dev-server.sh, run as a developer runs it, in a copy of the project (it writes .dev/ there)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import jwcrypto.common
import pytest
from jwcrypto import jwk, jwt

from tests.httpclient import exchange
from tests.support import ROOT
from tests.zipapp_service import free_port, health, minimal_env

BUILT_FROM = ("token_exchange", "zipapp", "scripts", "setup.cfg", "pyproject.toml", "build.sh", "README.md")


@pytest.fixture
def project_copy(tmp_path, built_zipapps):
    """The project's sources and its built dist/, the zipapps newer than every source (up to date)."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in (*BUILT_FROM, "dist"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, copy / name)
    for name in os.listdir(ROOT):
        if name.startswith("requirements"):
            shutil.copy2(ROOT / name, copy / name)
    for pyz in (copy / "dist").glob("*.pyz"):
        pyz.touch()
    return copy


def start(project, home, *args):
    return subprocess.Popen(
        ["bash", str(project / "scripts" / "dev-server.sh"), *args],
        env=minimal_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_port_in_use_stops_it_before_anything_is_built(project_copy, zipapp_home):
    pyz = project_copy / "dist" / "token-exchange.pyz"
    os.utime(project_copy / "setup.cfg")  # a source newer than dist/: it would build
    built_at = pyz.stat().st_mtime_ns
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            ["bash", str(project_copy / "scripts" / "dev-server.sh"), "-port", str(port)],
            env=minimal_env(zipapp_home),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert completed.returncode == 1
    assert completed.stderr.strip() == (
        f"dev-server: port {port} is in use (choose others with -port N and -prometheusx.listen-address :M)"
    )
    assert "built dist" not in completed.stdout
    assert pyz.stat().st_mtime_ns == built_at


def test_up_to_date_it_starts_at_once_and_prints_the_real_addresses(project_copy, zipapp_home):
    port, metrics_port = free_port(), free_port()
    service = start(project_copy, zipapp_home, "-port", str(port), f"-prometheusx.listen-address=:{metrics_port}")
    try:
        lines = []
        deadline = time.monotonic() + 60
        while health(f"http://127.0.0.1:{port}") != b"ok":
            assert service.poll() is None, service.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
        lines = service.stdout.read().splitlines()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert lines[0] == "dist/ is up to date; not rebuilding"
    assert not any(line.startswith("built dist") for line in lines)
    assert f"  tokens and JWKS on http://localhost:{port} (/v0/token/integration, /.well-known/jwks.json)" in lines
    assert f"  metrics on http://localhost:{metrics_port}/metrics" in lines
    assert (project_copy / ".dev" / "jwk-priv.json").exists()


def test_the_printed_commands_work_when_pasted(project_copy, zipapp_home):
    port = free_port()
    service = start(project_copy, zipapp_home, "-port", str(port), f"-prometheusx.listen-address=:{free_port()}")
    try:
        banner = ""
        deadline = time.monotonic() + 60
        while "curl" not in banner:
            assert time.monotonic() < deadline and service.poll() is None
            banner += service.stdout.readline()
        commands = [line.strip() for line in banner.splitlines() if line.startswith("  API_KEY=")]
        assert len(commands) == 1
        while health(f"http://127.0.0.1:{port}") != b"ok":
            assert time.monotonic() < deadline and service.poll() is None
            time.sleep(0.1)
        # The first command, pasted into a shell, leaves the key in $API_KEY.
        shell = subprocess.run(
            ["bash", "-c", commands[0] + '\nprintf %s "$API_KEY"'],
            cwd=project_copy,
            env=minimal_env(zipapp_home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        assert re.fullmatch(r"mlabk\.cii_demo\.ki_[0-9a-f]{16}\.\S+", shell.stdout), shell.stdout
        assert exchange(f"http://127.0.0.1:{port}", "integration", shell.stdout).status == 200
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)


def readme_tour():
    """The shell commands of the README's tour, as a reader pastes them."""
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    return tour.split("```sh\n", 1)[1].split("\n```", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_the_readme_tour_works_when_pasted(project_copy, zipapp_home):
    port, metrics_port = free_port(), free_port()
    commands = readme_tour().replace("localhost:8080", f"localhost:{port}")
    commands = commands.replace("localhost:9990", f"localhost:{metrics_port}")
    service = start(project_copy, zipapp_home, "-port", str(port), f"-prometheusx.listen-address=:{metrics_port}")
    try:
        deadline = time.monotonic() + 60
        while health(f"http://127.0.0.1:{port}") != b"ok":
            assert time.monotonic() < deadline and service.poll() is None
            time.sleep(0.1)
        tour = subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + commands],
            cwd=project_copy,
            env=minimal_env(zipapp_home),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    assert tour.returncode == 0, tour.stderr
    lines = tour.stdout.splitlines()
    integration, autojoin = (json.loads(line)["token"] for line in lines[:2])
    assert json.loads(lines[2])["keys"]
    # Verified as a consumer would, against the JWKS the tour printed (the service has stopped since).
    assert verify_jwks_token(lines[2], integration, "integration")["int_id"] == "demo"
    assert verify_jwks_token(lines[2], autojoin, "autojoin")["org"] == "example-org"
    assert sorted(lines[3:]) == [
        'tokenexchange_tokens_issued_total{audience="autojoin"} 1.0',
        'tokenexchange_tokens_issued_total{audience="integration"} 1.0',
    ]


def verify_jwks_token(jwks_text, token, audience):
    keys = jwk.JWKSet.from_json(jwks_text)
    header = json.loads(jwcrypto.common.base64url_decode(token.split(".")[0]))
    verified = jwt.JWT(
        key=keys.get_key(header["kid"]),
        jwt=token,
        algs=[header["alg"]],
        check_claims={"iss": "token-exchange", "aud": audience, "exp": None},
    )
    return json.loads(verified.claims)
