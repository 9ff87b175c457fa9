"""/health and the log while more connections are open than the service's open-file limit allows.

Starts the real service with the open-file limit systemd gives by default
(1024, soft and hard), opens 1500 connections that each have one /health
answered and then stay open, idle, until the service closes them, and
probes /health on a new connection every 0.5 s throughout, for --seconds.
Prints the probes' latency and the log lines the service wrote per minute.

    .venv/bin/python bench/open_file_limit.py              # 60 s
    .venv/bin/python bench/open_file_limit.py --seconds 20
"""

import argparse
import asyncio
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run_bench import HOST, free_port, service_command, wait_for_port, write_signing_key  # noqa: E402

OPEN_FILES = 1024
IDLE_CONNECTIONS = 1500
PROBE_EVERY_SECONDS = 0.5
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


async def health_on(reader, writer):
    writer.write(HEALTH)
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(2)  # "ok"


async def idle_connection(port, still_open):
    """One connection with one answered /health, then kept open, idle, until the service closes it."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return
    try:
        await asyncio.wait_for(health_on(reader, writer), 30)
        still_open.add(writer)
        await reader.read(1)  # returns when the service closes the connection
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    finally:
        still_open.discard(writer)
        writer.close()


async def probe(port):
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            await asyncio.wait_for(health_on(reader, writer), 10)
        finally:
            writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        print(f"probe failed after {time.monotonic() - started:.2f} s: {e!r}", flush=True)
        return None
    return time.monotonic() - started


async def probe_until(port, done):
    """/health latencies, one probe every PROBE_EVERY_SECONDS until done() (None: not answered)."""
    latencies = []
    while not done():
        latencies.append(await probe(port))
        await asyncio.sleep(PROBE_EVERY_SECONDS)
    return latencies


async def drive(port, seconds):
    """Probe while the idle connections are being opened, then while they stay open for seconds."""
    still_open = set()
    idle = [asyncio.create_task(idle_connection(port, still_open)) for _ in range(IDLE_CONNECTIONS)]
    # Opening is done once every idle connection has had its answer or given up.
    settled = asyncio.create_task(settle(idle, still_open))
    while_opening = await probe_until(port, settled.done)
    deadline = time.monotonic() + seconds
    while_idle = await probe_until(port, lambda: time.monotonic() >= deadline)
    open_at_end = len(still_open)
    for task in idle:
        task.cancel()
    await asyncio.gather(*idle, return_exceptions=True)
    return while_opening, while_idle, open_at_end


async def settle(idle, still_open):
    while len(still_open) + sum(task.done() for task in idle) < len(idle):
        await asyncio.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * IDLE_CONNECTIONS)), hard))
    with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryFile() as log:
        key_path, _ = write_signing_key(workdir)
        port = free_port()
        argv = service_command(port, key_path, pathlib.Path(workdir) / "keys.db")
        limit = (OPEN_FILES, OPEN_FILES)
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit),
        )
        try:
            wait_for_port(port)
            started = time.monotonic()
            while_opening, while_idle, open_at_end = asyncio.run(drive(port, args.seconds))
            minutes = (time.monotonic() - started) / 60
            written = log_text(log)
        finally:
            process.terminate()
            process.wait(60)
    # The lines after start-up's last.
    lines = written.partition("listening on port")[2].count("\n") - 1
    print(f"open-file limit {OPEN_FILES}; {IDLE_CONNECTIONS} connections opened, each idle after one answer")
    report("/health while they connect", while_opening)
    report(f"/health while {open_at_end} stay open, idle, for {args.seconds:g} s", while_idle)
    print(f"log lines after start-up: {lines} in {60 * minutes:.0f} s ({lines / minutes:.1f} per minute)")


def report(what, latencies):
    answered = sorted(seconds for seconds in latencies if seconds is not None)
    line = f"{what}: {len(answered)} of {len(latencies)} probes answered"
    if answered:
        line += f"; median {1000 * statistics.median(answered):.1f} ms, max {1000 * answered[-1]:.1f} ms"
    print(line)


def log_text(log):
    # pread: moving the file's shared offset would have the service overwrite its earlier lines.
    fd = log.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")


if __name__ == "__main__":
    main()
