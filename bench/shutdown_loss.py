"""Requests lost when the service is stopped under load on kept-alive connections.

Starts the real service on a fresh SQLite store, drives it with 50
kept-alive connections sending exchanges one after another (tests/keepalive_load.py),
sends SIGTERM once every connection has had an answer, and counts the requests
sent whole that got no answer. Repeats for 1 and 2 workers.

    .venv/bin/python bench/shutdown_loss.py              # 10 runs each with 1 and 2 workers
    .venv/bin/python bench/shutdown_loss.py --runs 3 --workers 2
"""

import argparse
import asyncio
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run_bench import HOST, free_port, make_keys, service_command, wait_for_port, write_signing_key  # noqa: E402

from tests.keepalive_load import keep_alive_load  # noqa: E402
from token_exchange.store.sqlite import SQLiteKeyStore  # noqa: E402

CONNECTIONS = 50


def one_run(key_path, db_path, api_key, workers):
    port = free_port()
    argv = service_command(port, key_path, db_path, "-workers", str(workers))
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        wait_for_port(port)
        body = json.dumps({"api_key": api_key}).encode()
        request = (
            b"POST /v0/token/integration HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (HOST.encode(), port, len(body), body)
        )

        async def stop():
            process.send_signal(signal.SIGTERM)

        started = time.monotonic()
        result = asyncio.run(keep_alive_load(HOST, port, request, CONNECTIONS, stop))
        status = process.wait(60)
        return result, status, time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, action="append", help="repeatable; default 1 and 2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        key_path, _ = write_signing_key(workdir)
        db_path = pathlib.Path(workdir) / "keys.db"
        store = SQLiteKeyStore(str(db_path))
        api_key = make_keys(store, 1, 4, "shutdown")[0]
        store.close()
        for workers in args.workers or (1, 2):
            lost = []
            for run in range(args.runs):
                result, status, seconds = one_run(key_path, db_path, api_key, workers)
                lost.append(result.lost)
                print(
                    f"workers={workers} run={run + 1}: answered={result.answered} lost={result.lost} "
                    f"statuses={dict(result.statuses)} exit={status} {seconds:.1f}s",
                    flush=True,
                )
            print(f"workers={workers}: {sum(lost)} lost in {args.runs} runs (per run: {lost})", flush=True)


if __name__ == "__main__":
    main()
