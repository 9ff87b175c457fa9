"""Measure the service against the figures bench/RESULTS.md records, in one run.

Starts the real service (and a bare Tornado server for comparison) on
127.0.0.1 with a fresh SQLite store and signing key in a temporary
directory, drives them with wrk (warm exchanges, bare requests) and with a
small asyncio client (cache-miss exchanges, /health during a bcrypt flood),
and prints every figure side by side. Never run in CI: it loads the
machine for a few minutes.

    .venv/bin/python bench/run_bench.py            # the full run (100,000 requests for RSS)
    .venv/bin/python bench/run_bench.py --quick    # a short smoke run
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import pathlib
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import bcrypt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from token_exchange.signing.keyfile import generate_private_jwk, load_key_set  # noqa: E402
from token_exchange.store.sqlite import SQLiteKeyStore  # noqa: E402
from token_exchange.verification import apikey  # noqa: E402

HOST = "127.0.0.1"  # the benchmark only ever targets this machine
BARE_SERVER = pathlib.Path(__file__).resolve().parent / "bare_server.py"
# Exchanges in flight while /health is probed (the task's figure).
FLOOD_IN_FLIGHT = 50
# The machine may be shared or its speed may drift: more, shorter runs give each figure more
# chances to catch the machine at its best, and the best of each is what is compared.
ROUNDS = 5


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {HOST}:{port} after {timeout} s")


def rss_mb(pid, field="VmRSS"):
    """Resident memory of pid in MB (field VmHWM: its peak so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_description():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )


# Keys and the processes under test.


def write_signing_key(workdir):
    """A new RS256 signing key file in workdir: its path and the loaded key."""
    key_path = pathlib.Path(workdir) / "jwk-priv.json"
    key_path.write_text(json.dumps(generate_private_jwk("RS256")))
    return key_path, load_key_set(str(key_path)).signing_key


def make_keys(store, count, cost, prefix):
    """count integration keys with bcrypt at cost; their API keys. Hashing uses every core."""
    secrets = [apikey.generate_secret() for _ in range(count)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        hashes = list(pool.map(lambda s: bcrypt.hashpw(s.encode(), bcrypt.gensalt(cost)).decode(), secrets))
    keys = []
    for i, (secret, key_hash) in enumerate(zip(secrets, hashes)):
        integration_id, key_id = f"{prefix}{i}", apikey.generate_key_id()
        store.ensure_integration(integration_id)
        store.add_integration_key(integration_id, key_id, key_hash)
        keys.append(apikey.format_integration_key(integration_id, key_id, secret))
    return keys


def service_command(port, key_path, db_path, *flags, program=("-m", "token_exchange")):
    """The command that starts the service on port with a signing key file and a SQLite store.

    program: what python runs, the service module by default."""
    # A free metrics port too: the default one may be in use on a shared machine.
    return [
        sys.executable,
        *program,
        "-port",
        str(port),
        "-private-key-path",
        str(key_path),
        "-store",
        f"sqlite:{db_path}",
        "-prometheusx.listen-address",
        f"{HOST}:{free_port()}",
        *flags,
    ]


def start(argv):
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def pin(pid, cpus):
    """Run every thread of pid on cpus (threads started later inherit it), if this machine allows it."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:
            pass


def on_server_core(fn, *args):
    """fn(*args) run on core 0, where the servers under test run (see main), then back on every core."""
    all_cores = os.sched_getaffinity(0)
    pin(os.getpid(), {0})
    try:
        return fn(*args)
    finally:
        pin(os.getpid(), all_cores)


# wrk: warm exchanges and bare requests.


def wrk(port, path, body, seconds, connections, workdir):
    script = pathlib.Path(workdir) / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    # wrk on the last core, the server under test on the first (see main).
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(os.cpu_count() - 1),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://{HOST}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": _wrk_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99_ms": _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["failed"] = int(bad.group(1)) if bad else 0
    if errors:
        result["socket_errors"] = errors.group(1)
    return result


def _wrk_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


# asyncio client: cache-miss exchanges and /health probes.


async def http_request(port, method, path, body=b""):
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    return int(response.split(b" ", 2)[1])


def exchange_body(api_key):
    return json.dumps({"api_key": api_key}).encode()


def prime_warm_key(ports, body):
    """One exchange with the warm key on each port, so that no measured round includes its first one."""
    # "Warm" means the key's secret has verified once already: without this, the first round of each
    # service would include a bcrypt check and a store read.
    for port in ports:
        if asyncio.run(http_request(port, "POST", "/v0/token/integration", body.encode())) != 200:
            sys.exit("the warm key was refused: the warm figures would not be exchanges")


async def cache_miss_run(port, keys, concurrency):
    """Exchange each key once (each a bcrypt check); statuses and elapsed seconds."""
    queue = list(keys)
    statuses = []

    async def worker():
        while queue:
            statuses.append(await http_request(port, "POST", "/v0/token/integration", exchange_body(queue.pop())))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, time.perf_counter() - started


async def health_during_flood(port, wrong_keys, seconds):
    """Keep FLOOD_IN_FLIGHT wrong-secret exchanges in flight; probe /health meanwhile."""
    stop = time.monotonic() + seconds
    flood_statuses = []
    health_ms = []
    queue = list(wrong_keys)

    async def flooder():
        while time.monotonic() < stop and queue:
            flood_statuses.append(await http_request(port, "POST", "/v0/token/integration", exchange_body(queue.pop())))

    async def prober():
        await asyncio.sleep(0.5)  # let the flood fill the queue first
        while time.monotonic() < stop:
            started = time.perf_counter()
            assert await http_request(port, "GET", "/health") == 200
            health_ms.append(1000 * (time.perf_counter() - started))
            await asyncio.sleep(0.01)

    await asyncio.gather(prober(), *(flooder() for _ in range(FLOOD_IN_FLIGHT)))
    return health_ms, flood_statuses


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# In-process reference figures.


def signature_seconds(signing_key, seconds=1.0):
    """Seconds one bare RS256 signature takes with the key's cryptography object, over one run."""
    key = signing_key.jwk.get_op_key("sign")
    data = b"x" * 300  # about the size of a token's signing input
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return (time.perf_counter() - started) / count


def bcrypt_seconds(cost, runs=8):
    """Seconds one bcrypt check takes on one core (the fastest of runs)."""
    secret = b"benchmark-secret"
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(cost))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        bcrypt.checkpw(secret, hashed)
        times.append(time.perf_counter() - started)
    return min(times)


def threaded_bcrypt_rate(cost, checks):
    """Checks per second of one bcrypt thread per core, here and now: what the pool could reach."""
    secret = b"benchmark-secret"
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(cost))
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda _: bcrypt.checkpw(secret, hashed), range(checks)))
    return checks / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, not the recorded figures")
    parser.add_argument("--bcrypt-cost", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10, help="wrk connections")
    args = parser.parse_args()
    seconds = 3 if args.quick else 6
    rss_requests = 10_000 if args.quick else 100_000
    miss_keys = 40 if args.quick else 200
    cores = os.cpu_count()
    print(f"machine: {machine_description()}", flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        key_path, signing_key = write_signing_key(workdir)
        db_path = pathlib.Path(workdir) / "keys.db"
        store = SQLiteKeyStore(str(db_path))
        print(f"creating {miss_keys + 1} keys at bcrypt cost {args.bcrypt_cost} ...", flush=True)
        warm_key = make_keys(store, 1, args.bcrypt_cost, "warm")[0]
        miss = make_keys(store, miss_keys, args.bcrypt_cost, "miss")
        store.close()

        # The request-rate figures run one server on the first core and wrk on another, so the
        # signature is timed on that first core too; bcrypt is timed on one core as well.
        t_bcrypt = on_server_core(bcrypt_seconds, args.bcrypt_cost)

        bare_port, port, all_lines_port = free_port(), free_port(), free_port()
        bare = start([sys.executable, str(BARE_SERVER), str(bare_port)])

        service = start(service_command(port, key_path, db_path))  # default flags
        # The same with an access line for every request, which the default leaves out for successes.
        all_lines = start(service_command(all_lines_port, key_path, db_path, "-access-log", "all"))
        try:
            for process, process_port in ((bare, bare_port), (service, port), (all_lines, all_lines_port)):
                wait_for_port(process_port)
                pin(process.pid, {0})
            # The machine may be shared: each figure is the best of ROUNDS runs, all of them interleaved.
            body = exchange_body(warm_key).decode()
            rss_start = rss_mb(service.pid)
            prime_warm_key((port, all_lines_port), body)
            bare_runs, warm_runs, all_lines_runs, sign_runs = [], [], [], []
            for _ in range(ROUNDS):
                bare_runs.append(wrk(bare_port, "/v0/token/integration", body, seconds, args.connections, workdir))
                warm_runs.append(wrk(port, "/v0/token/integration", body, seconds, args.connections, workdir))
                all_lines_runs.append(
                    wrk(all_lines_port, "/v0/token/integration", body, seconds, args.connections, workdir)
                )
                sign_runs.append(on_server_core(signature_seconds, signing_key))
            all_lines.terminate()
            if any(run["failed"] for run in bare_runs):
                # A 404 with its log line is no bare request (runs 1 to 8 measured exactly that).
                sys.exit("the bare server answered non-2xx: its figure would not be a bare request's")
            t_sign = min(sign_runs)
            bare_result = max(bare_runs, key=lambda run: run["rps"])
            all_lines_result = max(all_lines_runs, key=lambda run: run["rps"])
            warm = dict(max(warm_runs, key=lambda run: run["rps"]))
            warm["requests"] = sum(run["requests"] for run in warm_runs)
            warm["failed"] = sum(run["failed"] for run in warm_runs)
            served, rss_series = warm["requests"], [(warm["requests"], rss_mb(service.pid))]
            while served < rss_requests:
                more = wrk(
                    port,
                    "/v0/token/integration",
                    body,
                    max(1, min(30, int((rss_requests - served) / warm["rps"]) + 1)),
                    args.connections,
                    workdir,
                )
                served += more["requests"]
                warm["failed"] += more["failed"]
                rss_series.append((served, rss_mb(service.pid)))

            pin(service.pid, os.sched_getaffinity(0))  # every core this script may use
            # The same work without the service, just before and after, shows what the
            # machine gives right now when other load shares it.
            raw_before = threaded_bcrypt_rate(args.bcrypt_cost, 4 * cores)
            statuses, elapsed = asyncio.run(cache_miss_run(port, miss, concurrency=4 * cores))
            miss_rate = len(miss) / elapsed
            raw_rate = (raw_before + threaded_bcrypt_rate(args.bcrypt_cost, 4 * cores)) / 2

            # Wrong secrets spread over the miss keys: every one is a bcrypt check and none is
            # throttled as long as each key id sees fewer than its failure limit.
            # "~" never occurs in a generated secret; the copy number keeps each wrong secret
            # distinct, so no two requests share one check.
            wrong = [f"{key[:-1]}~{copy}" for copy in range(4) for key in miss]
            health_ms, flood_statuses = asyncio.run(health_during_flood(port, wrong, seconds))
            rss_peak = rss_mb(service.pid, "VmHWM")
        finally:
            for process in (service, all_lines, bare):
                process.terminate()
                process.wait(10)

    bare_ms = 1000 / bare_result["rps"]
    warm_ms = 1000 / warm["rps"]
    sign_ms = 1000 * t_sign
    overhead_ratio = (warm_ms - sign_ms) / bare_ms
    # The same ratio from each round's own figures, taken within seconds of each other: drift
    # between rounds cancels out of it, where the best-of figures above may come from different rounds.
    round_ratios = [
        (1 / warm_run["rps"] - sign) * bare_run["rps"]
        for bare_run, warm_run, sign in zip(bare_runs, warm_runs, sign_runs)
    ]
    all_lines_ms = 1000 / all_lines_result["rps"]
    miss_ideal = cores / t_bcrypt
    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    flood_counts = {status: flood_statuses.count(status) for status in sorted(set(flood_statuses))}

    rows = [
        (
            "bare Tornado POST",
            f"{bare_result['rps']:.0f} req/s",
            f"p50 {bare_result['p50_ms']:.2f} ms",
            f"p99 {bare_result['p99_ms']:.2f} ms",
            f"{bare_ms:.3f} ms/req",
        ),
        (
            "warm exchange (RS256)",
            f"{warm['rps']:.0f} req/s",
            f"p50 {warm['p50_ms']:.2f} ms",
            f"p99 {warm['p99_ms']:.2f} ms",
            f"{warm_ms:.3f} ms/req, {warm['failed']} non-2xx",
        ),
        ("RS256 signature alone", f"{1 / t_sign:.0f} sig/s", "", "", f"{sign_ms:.3f} ms/sig"),
        ("warm beyond signature / bare", f"{overhead_ratio:.2f} x", "", "", "target <= 1.35"),
        (
            "the same, round by round",
            f"median {statistics.median(round_ratios):.2f} x",
            f"{min(round_ratios):.2f} to {max(round_ratios):.2f} x",
            "",
            "each round's own bare, warm and signature: " + " ".join(f"{ratio:.2f}" for ratio in round_ratios),
        ),
        (
            "warm, -access-log all",
            f"{all_lines_result['rps']:.0f} req/s",
            f"p50 {all_lines_result['p50_ms']:.2f} ms",
            f"p99 {all_lines_result['p99_ms']:.2f} ms",
            f"{all_lines_ms:.3f} ms/req, {(all_lines_ms - sign_ms) / bare_ms:.2f} x beyond signature / bare",
        ),
        (
            f"bcrypt check, cost {args.bcrypt_cost}",
            f"{1 / t_bcrypt:.1f} /s per core",
            "",
            "",
            f"{1000 * t_bcrypt:.1f} ms",
        ),
        (
            "cache-miss exchanges",
            f"{miss_rate:.1f} req/s",
            f"{100 * miss_rate / miss_ideal:.0f} % of {miss_ideal:.1f}",
            f"statuses {counts}",
            f"target >= 85 %; {100 * miss_rate / raw_rate:.0f} % of bare bcrypt threads now ({raw_rate:.1f}/s)",
        ),
        (
            f"/health during {FLOOD_IN_FLIGHT}-deep flood",
            f"{len(health_ms)} probes",
            f"p50 {statistics.median(health_ms):.2f} ms",
            f"p99 {percentile(health_ms, 0.99):.2f} ms",
            f"target p99 <= 20 ms; flood statuses {flood_counts}",
        ),
        (
            "RSS of the service",
            f"{rss_start:.1f} MB idle",
            f"{rss_series[0][1]:.1f} MB at {rss_series[0][0]}",
            f"{rss_series[-1][1]:.1f} MB at {rss_series[-1][0]}",
            f"peak {rss_peak:.1f} MB; target <= 100 MB, flat",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    print("RSS by requests served: " + ", ".join(f"{n}: {mb:.1f} MB" for n, mb in rss_series))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
