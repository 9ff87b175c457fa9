"""The Go token-exchange and this service side by side: behaviour over a corpus, then speed.

Starts the project's Datastore test server (tests/datastore_server.py),
writes one integration key with the Go `create-integration` and one
autojoin key with the Go `seed-autojoin`, and starts both services on that
store with the same RS256 signing key. Then:

1. sends every request of the corpus below to both and prints, per
   request, the status, body and the headers a client reads, and of a token
   its header and claims (times as offsets from iat, the jti as its form),
   marking each difference: "documented" when README's "Differences from
   the Go service" lists it, "DIFF" otherwise;
2. drives a warm integration exchange at each with wrk, the service under
   test pinned to core 0 and wrk to the last core, and prints requests/s and
   CPU time per request of each, with the ratios.

Not part of the tests or CI: it needs the Go binaries, which a clone does
not have. Needs wrk (apt-get install -y wrk) and the .venv of scripts/test.sh.

    .venv/bin/python bench/compare_go.py --go-binary DIR [--seconds 10] [--connections 10]

DIR holds token-exchange, create-integration and seed-autojoin built from
github.com/m-lab/token-exchange (the Go service takes -listen-host).
"""

import argparse
import base64
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import cpu_per_request
import run_bench
from run_bench import HOST, free_port, pin, wait_for_port

sys.path.insert(0, str(run_bench.ROOT))

from tests.datastore_server import DatastoreTestServer  # noqa: E402
from token_exchange.signing.keyfile import generate_private_jwk, write_private_jwk  # noqa: E402

PROJECT = "mlab-sandbox"
# Headers a client reads; the others (Date, Content-Length) say nothing about behaviour.
CLIENT_HEADERS = (
    "Content-Type",
    "Allow",
    "Retry-After",
    "Cache-Control",
    "Access-Control-Allow-Origin",
    "X-Content-Type-Options",
    "Connection",
    "Etag",
    "Server",
)
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# Each difference README's "Differences from the Go service" lists, by corpus entry: its reason, and the
# fields of the answer it may change (None: any).
DOCUMENTED = {
    "body null": ("null as the body is a 400 (Go: the empty key, 401)", None),
    "api_key null": ("null as api_key is a 400 (Go: the empty key, 401)", None),
    "API_KEY null after a good key": ("null as api_key is a 400 (Go: ignored)", None),
    "body over 64 KiB": ("oversized bodies are refused (413)", None),
    "HEAD jwks": ("HEAD is answered on the JWKS (Go: 405)", None),
    "GET jwks": ("the JWKS carries an ETag, for caches that revalidate it", {"Etag"}),
    "GET ready": ("/ready is ours (Go: 404)", None),
    "nested 2000 deep": ("bodies nested beyond about 1000 levels are a 400", None),
    "FOO health": ("a method outside Tornado's seven is a 405 on any path (Go answers it on /health)", None),
}
TIMES = re.compile(r'"(exp|nbf|iat)":(\d+)')


def corpus(integration_key, autojoin_key, escaped_org_key):
    """(name, method, path, body bytes or None, extra headers) of every request compared."""
    k = integration_key.encode()
    a = autojoin_key.encode()
    integration = "/v0/token/integration"
    entries = [
        ("exact api_key", "POST", integration, b'{"api_key":"%s"}' % k),
        ("autojoin key", "POST", "/v0/token/autojoin", b'{"api_key":"%s"}' % a),
        (
            "autojoin key of an org with characters to escape",
            "POST",
            "/v0/token/autojoin",
            b'{"api_key":"%s"}' % escaped_org_key.encode(),
        ),
        ("API_KEY", "POST", integration, b'{"API_KEY":"%s"}' % k),
        ("Api_Key", "POST", integration, b'{"Api_Key":"%s"}' % k),
        ("Kelvin sign k", "POST", integration, '{"api_\u212aey":"%s"}'.encode() % k),
        ("long s is no k", "POST", integration, '{"api_\u017fey":"%s"}'.encode() % k),
        ("escaped name", "POST", integration, b'{"\\u0061pi_key":"%s"}' % k),
        ("exact then API_KEY wrong", "POST", integration, b'{"api_key":"%s","API_KEY":"bad"}' % k),
        ("API_KEY wrong then exact", "POST", integration, b'{"API_KEY":"bad","api_key":"%s"}' % k),
        ("API_KEY number after a good key", "POST", integration, b'{"api_key":"%s","API_KEY":5}' % k),
        ("API_KEY null after a good key", "POST", integration, b'{"api_key":"%s","API_KEY":null}' % k),
        ("duplicate exact", "POST", integration, b'{"api_key":"bad","api_key":"%s"}' % k),
        ("garbage after the object", "POST", integration, b'{"api_key":"%s"} garbage' % k),
        ("two objects", "POST", integration, b'{"api_key":"%s"}{"api_key":"x"}' % k),
        ("extra brace", "POST", integration, b'{"api_key":"%s"}}' % k),
        ("unfinished second value", "POST", integration, b'{"api_key":"%s"}{"a' % k),
        ("invalid UTF-8 after the object", "POST", integration, b'{"api_key":"%s"}\n\xff\xff' % k),
        ("invalid UTF-8 in the key", "POST", integration, b'{"api_key":"%s\xff"}' % k),
        ("invalid UTF-8 in another field", "POST", integration, b'{"api_key":"%s","x":"\xff\xfe"}' % k),
        ("invalid UTF-8 in a name", "POST", integration, b'{"api_key\xff":"%s"}' % k),
        ("invalid UTF-8 outside strings", "POST", integration, b'{"api_key":"%s",\xff}' % k),
        ("lone surrogate escape", "POST", integration, b'{"api_key":"\\ud800"}'),
        ("leading whitespace", "POST", integration, b' \t\r\n{"api_key":"%s"}' % k),
        (
            "unknown fields of every type",
            "POST",
            integration,
            b'{"x":{"y":[1,2.5e3,{"z":null}]},"t":true,"api_key":"%s","n":-0}' % k,
        ),
        ("huge exponent beside the key", "POST", integration, b'{"x":1e999999,"api_key":"%s"}' % k),
        ("empty body", "POST", integration, b""),
        ("whitespace body", "POST", integration, b"  \n"),
        ("body null", "POST", integration, b"null"),
        ("api_key null", "POST", integration, b'{"api_key":null}'),
        ("api_key number", "POST", integration, b'{"api_key":5}'),
        ("api_key object", "POST", integration, b'{"api_key":{"a":1}}'),
        ("api_key empty", "POST", integration, b'{"api_key":""}'),
        ("no api_key", "POST", integration, b"{}"),
        ("array", "POST", integration, b"[]"),
        ("number then letters", "POST", integration, b"123abc"),
        ("string", "POST", integration, b'"x"'),
        ("BOM", "POST", integration, b'\xef\xbb\xbf{"api_key":"%s"}' % k),
        ("NaN", "POST", integration, b'{"api_key":"%s","x":NaN}' % k),
        ("control character", "POST", integration, b'{"api_key":"%s\x01"}' % k),
        ("leading zero", "POST", integration, b'{"x":01,"api_key":"%s"}' % k),
        ("trailing comma", "POST", integration, b'{"api_key":"%s",}' % k),
        ("single quotes", "POST", integration, b"{'api_key':'%s'}" % k),
        ("bad escape", "POST", integration, b'{"api_key":"\\x41"}'),
        ("unfinished object", "POST", integration, b'{"api_key":"%s"' % k),
        ("nested 2000 deep", "POST", integration, b'{"x":' + b"[" * 2000 + b"]" * 2000 + b',"api_key":"%s"}' % k),
        ("body over 64 KiB", "POST", integration, b'{"api_key":"%s","pad":"%s"}' % (k, b"x" * 70_000)),
        ("wrong secret", "POST", integration, b'{"api_key":"%s"}' % (k[:-1] + (b"A" if k[-1:] != b"A" else b"B"))),
        ("unknown key id", "POST", integration, b'{"api_key":"%s"}' % re.sub(rb"ki_[0-9a-f]+", b"ki_00", k)),
        ("malformed key", "POST", integration, b'{"api_key":"mlabk.nope"}'),
        ("unknown autojoin key", "POST", "/v0/token/autojoin", b'{"api_key":"nope"}'),
        ("GET integration", "GET", integration, None),
        ("PUT autojoin", "PUT", "/v0/token/autojoin", b"{}"),
        ("OPTIONS integration", "OPTIONS", integration, None),
        ("GET jwks", "GET", "/.well-known/jwks.json", None),
        ("HEAD jwks", "HEAD", "/.well-known/jwks.json", None),
        ("POST jwks", "POST", "/.well-known/jwks.json", b"{}"),
        ("GET health", "GET", "/health", None),
        ("HEAD health", "HEAD", "/health", None),
        ("POST health", "POST", "/health", b"{}"),
        ("DELETE health", "DELETE", "/health", None),
        ("FOO health", "FOO", "/health", None),
        ("GET ready", "GET", "/ready", None),
        ("GET unknown path", "GET", "/nowhere", None),
        ("POST unknown path", "POST", "/v0/token/other", b"{}"),
    ]
    return [
        (name, method, path, body, {"Content-Type": "application/json"} if body is not None else {})
        for name, method, path, body in entries
    ]


def send(port, method, path, body, headers):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {name: response.getheader(name) for name in CLIENT_HEADERS}, response.read()
    finally:
        conn.close()


def _b64_text(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("utf-8", "backslashreplace")


def describe(status, headers, body):
    """What a client sees of an answer, with a token's varying parts in their stable form."""
    seen = {"status": status, **{name: value for name, value in headers.items() if value is not None}}
    try:
        token = json.loads(body)["token"]
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace")
        seen["body"] = text if len(text) < 200 else f"{text[:60]}... ({len(body)} bytes)"
        return seen
    header, payload, _signature = token.split(".")
    # The exact text of both, with the times as offsets from iat and the jti as its form.
    claims = _b64_text(payload)
    iat = int(json.loads(claims).get("iat", 0))
    claims = TIMES.sub(lambda m: f'"{m.group(1)}":iat{int(m.group(2)) - iat:+d}', claims)
    claims = UUID4.sub("<uuid4>", claims)
    seen["body"] = f"token header {_b64_text(header)} claims {claims}"
    return seen


def compare(go_port, py_port, entries):
    """Print the behaviour table; return the undocumented differences."""
    undocumented = []
    for name, method, path, body, headers in entries:
        go = describe(*send(go_port, method, path, body, headers))
        py = describe(*send(py_port, method, path, body, headers))
        if go == py:
            print(f"  same        {name}: {go['status']}")
            continue
        differing = {field for field in set(go) | set(py) if go.get(field) != py.get(field)}
        reason, fields = DOCUMENTED.get(name, (None, set()))
        documented = reason is not None and (fields is None or differing <= fields)
        if not documented:
            undocumented.append(name)
        print(f"  {'documented' if documented else 'DIFF':11s} {name}:")
        for field in sorted(differing, key=lambda f: (f != "status", f)):
            print(f"      {field}: go {go.get(field)!r}  ours {py.get(field)!r}")
        if documented:
            print(f"      ({reason})")
    return undocumented


def speed(name, process, port, body, seconds, connections, workdir):
    """requests/s and CPU µs per request of one warm-exchange run against a service pinned to core 0."""
    pin(process.pid, {0})
    before = cpu_per_request.cpu_seconds(process.pid)
    run = run_bench.wrk(port, "/v0/token/integration", body, seconds, connections, workdir)
    used = cpu_per_request.cpu_seconds(process.pid) - before
    if run["failed"] or run.get("socket_errors"):
        sys.exit(f"{name}: some requests failed: {run}")
    return run["rps"], 1e6 * used / run["requests"]


def go_environment(datastore_address):
    # The Go flags are read from the environment too: no stray PORT or PROJECT_ID may reach them.
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "TMPDIR", "LANG")}
    env.update(DATASTORE_EMULATOR_HOST=datastore_address, GCE_METADATA_HOST="127.0.0.1:1")
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--go-binary", required=True, type=pathlib.Path, help="directory of the Go binaries")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections")
    args = parser.parse_args()
    go_bin = args.go_binary.resolve()
    print(f"machine: {run_bench.machine_description()}", flush=True)

    datastore = DatastoreTestServer(project=PROJECT)
    address = datastore.start()
    env = go_environment(address)
    processes = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            key_path = pathlib.Path(workdir) / "jwk-priv.json"
            write_private_jwk(str(key_path), generate_private_jwk("RS256"))
            created = subprocess.run(
                [str(go_bin / "create-integration"), f"-project={PROJECT}", "-integration-id=acme", "-key-tier=1"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            integration_key = re.search(r"API Key:\s+(\S+)", created).group(1)
            seeded = subprocess.run(
                [str(go_bin / "seed-autojoin"), "-org", "example-org", "-project", PROJECT],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            autojoin_key = seeded.split()[-1]
            escaped_org_key = subprocess.run(
                [str(go_bin / "seed-autojoin"), "-org", 'org <&> "\u00e9\u2028', "-project", PROJECT],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]

            go_port, py_port = free_port(), free_port()
            go = subprocess.Popen(
                [
                    str(go_bin / "token-exchange"),
                    f"-listen-host={HOST}",
                    f"-port={go_port}",
                    f"-private-key-path={key_path}",
                    f"-project-id={PROJECT}",
                    f"-prometheusx.listen-address={HOST}:{free_port()}",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(go)
            ours = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "token_exchange",
                    "-port",
                    str(py_port),
                    "-private-key-path",
                    str(key_path),
                    "-project-id",
                    PROJECT,
                    "-prometheusx.listen-address",
                    f"{HOST}:{free_port()}",
                ],
                env={**env, "PATH": os.environ.get("PATH", "")},
                cwd=run_bench.ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(ours)
            wait_for_port(go_port)
            wait_for_port(py_port)

            print("\nBehaviour, same requests to both (Go, then ours):")
            undocumented = compare(go_port, py_port, corpus(integration_key, autojoin_key, escaped_org_key))
            print(
                f"undocumented differences: {len(undocumented)}"
                + (f" ({', '.join(undocumented)})" if undocumented else "")
            )

            body = run_bench.exchange_body(integration_key).decode()
            run_bench.prime_warm_key((go_port, py_port), body)
            print(
                f"\nWarm integration exchange, wrk -c{args.connections} for {args.seconds} s, "
                "each service alone on core 0:"
            )
            figures = {}
            for name, process, port in (("go", go, go_port), ("ours", ours, py_port)):
                figures[name] = speed(name, process, port, body, args.seconds, args.connections, workdir)
                rps, micros = figures[name]
                print(f"  {name:5s} {rps:9.0f} requests/s   {micros:6.0f} µs CPU per request")
            (go_rps, go_cpu), (py_rps, py_cpu) = figures["go"], figures["ours"]
            print(f"  ours / go: {py_rps / go_rps:.2f} x the requests/s, {go_cpu / py_cpu:.2f} x less CPU per request")
            print(f"load average at end: {os.getloadavg()[0]:.2f}")
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
            datastore.stop()


if __name__ == "__main__":
    main()
