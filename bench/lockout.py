"""Can a flood of wrong secrets at a key id lock its holder out? The holder's success rate under the flood.

Starts the real service as a fresh process (a new SQLite store holding one
integration key hashed with bcrypt at the default cost, a new signing key),
then floods wrong secrets at that key id from 127.0.0.2, each one distinct,
at --rate a second, and --head-start seconds later has the holder send its
right secret from 127.0.0.1 every --interval seconds for --seconds seconds.
Prints the share of the holder's exchanges answered with a token, and what
the flood got. Only talks to 127.0.0.1 and 127.0.0.2 (Linux routes all of
127/8 to lo); never part of the tests or CI.

    .venv/bin/python bench/lockout.py                       # this checkout, 30 s
    .venv/bin/python bench/lockout.py --workers 2           # two processes, each with its own cache
    .venv/bin/python bench/lockout.py --tree DIR            # another checkout, e.g. `git archive` of main
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import run_bench
from cpu_per_request import check_imports_from
from run_bench import HOST, free_port, wait_for_port

from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.tools.provisioning import create_integration_key

HOLDER = "127.0.0.1"
ATTACKER = "127.0.0.2"


def exchange(port, api_key, source):
    """The status of one exchange from source address, on a connection of its own (None: no answer)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/v0/token/integration", json.dumps({"api_key": api_key}))
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wrong_secret(api_key, n):
    prefix, secret = api_key.rsplit(".", 1)
    return f"{prefix}.{secret[:-8]}{n:08d}"


def flood(port, api_key, rate, stop, statuses):
    """Distinct wrong secrets from ATTACKER at rate a second until stop is set; their statuses into statuses."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        started = time.monotonic()
        n = 0
        while not stop.is_set():
            future = pool.submit(exchange, port, wrong_secret(api_key, n), ATTACKER)
            future.add_done_callback(lambda done: statuses.append(done.result()))
            n += 1
            stop.wait(max(0.0, started + n / rate - time.monotonic()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="how long the holder keeps trying")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between the holder's tries")
    parser.add_argument("--rate", type=float, default=20, help="wrong secrets a second")
    parser.add_argument("--head-start", type=float, default=2, help="seconds the flood runs before the holder")
    parser.add_argument("--workers", type=int, default=1, help="-workers of the service")
    parser.add_argument("--tree", default=str(run_bench.ROOT), help="source tree to run the service from")
    args = parser.parse_args()
    check_imports_from(args.tree)
    print(f"machine: {run_bench.machine_description()}", flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        key_path, _ = run_bench.write_signing_key(workdir)
        db_path = pathlib.Path(workdir) / "keys.db"
        store = SQLiteKeyStore(str(db_path))
        key = create_integration_key(store, "holder")  # the default bcrypt cost, as create-integration
        store.close()
        port = free_port()
        command = run_bench.service_command(port, key_path, db_path, "-workers", str(args.workers))
        service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=args.tree)
        stop = threading.Event()
        flood_statuses: list = []
        try:
            wait_for_port(port)
            attacker = threading.Thread(target=flood, args=(port, key.api_key, args.rate, stop, flood_statuses))
            flood_started = time.monotonic()
            attacker.start()
            time.sleep(args.head_start)
            holder = []
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                holder.append(exchange(port, key.api_key, HOLDER))
                time.sleep(max(0.0, started + len(holder) * args.interval - time.monotonic()))
            stop.set()
            attacker.join()
            flood_seconds = time.monotonic() - flood_started
        finally:
            stop.set()
            service.terminate()
            service.wait(30)

    tokens = holder.count(200)
    print(f"service from {args.tree}, -workers {args.workers}, bcrypt cost of the key: default")
    print(
        f"flood from {ATTACKER}: {len(flood_statuses)} wrong secrets in {flood_seconds:.0f} s "
        f"({len(flood_statuses) / flood_seconds:.1f}/s), answers {dict(collections.Counter(flood_statuses))}"
    )
    print(
        f"holder from {HOLDER}: {tokens} tokens in {len(holder)} tries over {args.seconds:g} s: "
        f"{100 * tokens / len(holder):.1f} %, answers {dict(collections.Counter(holder))}, first try {holder[0]}"
    )


if __name__ == "__main__":
    sys.exit(main())
