"""Cold start of the built zipapp: process start to the first 200 on /health.

Run from the project root after build.sh:
    python3 bench/cold_start.py [--runs N]
The first run unpacks the zipapp into a fresh SHIV_ROOT; later runs reuse it.
Uses an embedded SQLite key store and a generated RS256 key, in a temporary
directory, with the minimal environment of a container.
"""

import argparse
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYZ = ROOT / "dist" / "token-exchange.pyz"
GENERATE_JWK = ROOT / "dist" / "generate-jwk.pyz"


def free_port():
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def one_start(python, workdir, shiv_root, key_path):
    port = free_port()
    env = {
        "HOME": str(workdir),
        "SHIV_ROOT": str(shiv_root),
        "PORT": str(port),
        "PRIVATE_KEY_PATH": str(key_path),
        "STORE": f"sqlite:{workdir / 'keys.db'}",
        "PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    started = time.perf_counter()
    process = subprocess.Popen([python, "-I", str(PYZ)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not healthy(port):
            if process.poll() is not None:
                raise SystemExit(f"the service exited with status {process.returncode}")
            time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="later runs to measure")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run the zipapp with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        key_path = workdir / "jwk-priv.json"
        subprocess.run(
            [args.python, "-I", str(GENERATE_JWK), "-alg", "RS256", "-out", str(key_path)],
            stdout=subprocess.DEVNULL,
            check=True,
            env={"HOME": tmp, "SHIV_ROOT": str(workdir / "shiv-tools")},
        )
        shiv_root = workdir / "shiv"
        first = one_start(args.python, workdir, shiv_root, key_path)
        later = [one_start(args.python, workdir, shiv_root, key_path) for _ in range(args.runs)]
    print(f"first run (unpacks the zipapp): {first:.3f} s")
    print(
        f"later runs ({len(later)}): median {statistics.median(later):.3f} s, "
        f"min {min(later):.3f} s, max {max(later):.3f} s"
    )
    print(f"cpus: {os.cpu_count()}, python: {args.python}")


if __name__ == "__main__":
    main()
