"""Cold start of the built service zipapp: process start to the first 200 on /health.

Run from the project root after build.sh:
    python3 bench/cold_start.py [--runs N] [--store sqlite]
It times
- the first start on a machine, where the zipapp unpacks itself into an empty SHIV_ROOT (compiling only
  what that start imports);
- starts from the image's state: the zipapps unpacked as the Dockerfile does (zipapp/unpack.py, every
  module compiled), each start on a fresh copy of that root, so none reuses what an earlier one wrote.
In the image itself, whose SHIV_ROOT the service's user cannot write to:
    docker run --rm -v "$PWD/bench:/bench:ro" --entrypoint python3 IMAGE /bench/cold_start.py --in-image

The store is the service's default, Datastore, at a DATASTORE_EMULATOR_HOST where nothing listens: start-up
creates the client but does not call the store before /health answers. A generated RS256 key, the minimal
environment of a container.
"""

import argparse
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGE_APP = pathlib.Path("/app")


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


def one_start(python, pyz, workdir, shiv_root, key_path, store):
    port = free_port()
    env = {
        "HOME": str(workdir),
        "SHIV_ROOT": str(shiv_root),
        "PORT": str(port),
        "PRIVATE_KEY_PATH": str(key_path),
        "PROMETHEUSX_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    if store == "datastore":
        env.update(PROJECT_ID="cold-start", DATASTORE_EMULATOR_HOST=f"127.0.0.1:{free_port()}")
    else:
        env["STORE"] = f"sqlite:{workdir / 'keys.db'}"
    started = time.perf_counter()
    process = subprocess.Popen([python, "-I", str(pyz)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not healthy(port):
            if process.poll() is not None:
                raise SystemExit(f"the service exited with status {process.returncode}")
            time.sleep(0.005)
        to_health = time.perf_counter() - started
        return to_health, cpu_seconds(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def cpu_seconds(pid):
    """CPU time a process has used so far (Linux): it tells less of what else the machine does than
    the wall clock does."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


def summary(label, runs):
    walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
    if len(runs) == 1:
        return f"{label}: to /health {walls[0]:.3f} s, CPU time to /health {cpus[0]:.2f} s"
    return (
        f"{label} ({len(runs)}): to /health median {statistics.median(walls):.3f} s "
        f"(min {min(walls):.3f}, max {max(walls):.3f}); "
        f"CPU time to /health median {statistics.median(cpus):.2f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="starts from the image's state to measure")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run the zipapp with")
    parser.add_argument("--store", choices=("datastore", "sqlite"), default="datastore")
    parser.add_argument("--in-image", action="store_true", help="time the image's own /app and SHIV_ROOT")
    args = parser.parse_args()
    dist = IMAGE_APP if args.in_image else ROOT / "dist"
    pyz = dist / "token-exchange.pyz"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        key_path = workdir / "jwk-priv.json"
        subprocess.run(
            [args.python, "-I", str(dist / "generate-jwk.pyz"), "-alg", "RS256", "-out", str(key_path)],
            stdout=subprocess.DEVNULL,
            check=True,
            env={"HOME": tmp, "SHIV_ROOT": os.environ["SHIV_ROOT"] if args.in_image else str(workdir / "tools")},
        )
        if args.in_image:
            times = [
                one_start(args.python, pyz, workdir, os.environ["SHIV_ROOT"], key_path, args.store)
                for _ in range(args.runs)
            ]
            print(summary("starts in the image", times))
        else:
            first = one_start(args.python, pyz, workdir, workdir / "first", key_path, args.store)
            print(summary("first start on a machine, which unpacks the zipapp", [first]))
            prepared = workdir / "prepared"
            subprocess.run(
                [args.python, "-I", str(ROOT / "zipapp" / "unpack.py"), str(prepared), str(pyz)],
                check=True,
            )
            times = []
            for run in range(args.runs):
                shiv_root = workdir / f"image-{run}"
                # Hard links: the same files (and times, which the .pyc files check) in directories of its own.
                shutil.copytree(prepared, shiv_root, symlinks=True, copy_function=os.link)
                times.append(one_start(args.python, pyz, workdir, shiv_root, key_path, args.store))
                shutil.rmtree(shiv_root)
            print(summary("starts from the image's state", times))
    print(f"store: {args.store}, cpus: {os.cpu_count()}, python: {args.python}")


if __name__ == "__main__":
    main()
