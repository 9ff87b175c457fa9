"""-workers: the built service as a supervisor and its forked workers, their metrics, signals and failures."""

import concurrent.futures
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from tests.consumer import verify_token
from tests.httpclient import exchange
from tests.support import ROOT
from tests.zipapp_service import (
    access_lines,
    error_line,
    free_port,
    hashing_queue_depth,
    metric_values,
    run_zipapp,
    settled,
)


def children_of(pid):
    """Pids of the running processes whose parent is pid (Linux /proc)."""
    children = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(entry.name))
    return children


def alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Batches of requests sent, at most, until both workers have served one.
MAX_WORKER_BATCHES = 25


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_two_workers_serve_add_up_and_stop_on_sigterm(zipapp_services, integration_key):
    key = integration_key("acme")
    slow_key = integration_key("slow", bcrypt_cost=14)  # about a second to check: in flight at SIGTERM
    service = zipapp_services.start("-workers", "2", "-access-log", "all")  # each line names its worker
    assert settled(lambda: len(children_of(service.process.pid)), 2) == 2
    workers = children_of(service.process.pid)

    # Many concurrent connections: both workers accept some of them. Which one accepts is the
    # kernel's choice, and on a busy machine one may win a whole batch: send batches until both
    # have served (bounded), counting every request for the metrics check below.
    batch, count, tokens = 40, 0, []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_WORKER_BATCHES):
            responses = list(pool.map(lambda _: exchange(service.base_url, "integration", key.api_key), range(batch)))
            assert [response.status for response in responses] == [200] * batch
            tokens += [response.json()["token"] for response in responses]
            count += batch
            assert settled(lambda: len(access_lines(service, "/v0/token/integration")), count) == count
            if {line["pid"] for line in access_lines(service, "/v0/token/integration")} == set(workers):
                break
    assert {line["pid"] for line in access_lines(service, "/v0/token/integration")} == set(workers)
    # Each worker draws its own randomness (none inherited across the fork): no jti repeats.
    jtis = [verify_token(service.base_url, token, "integration")["jti"] for token in tokens]
    assert len(set(jtis)) == len(tokens) == count
    # The supervisor's /metrics sums both workers.
    expected = {frozenset({("code", "200"), ("method", "post")}): float(count)}
    assert (
        settled(lambda: metric_values(service.metrics_url, "tokenexchange_integration_requests_total"), expected)
        == expected
    )

    # A request in flight when SIGTERM comes finishes; everything exits 0 and nothing is left running.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(exchange, service.base_url, "integration", slow_key.api_key)
        assert settled(lambda: hashing_queue_depth(service), 1) == 1  # its bcrypt check has started
        assert not slow.done()
        assert service.signal_and_wait(signal.SIGTERM, timeout=30) == 0, service.output()
        response = slow.result(30)
    assert response.status == 200
    assert "token" in response.json()
    assert not any(alive(pid) for pid in workers)
    stopped = [line for line in service.output().splitlines() if '"message": "stopped' in line]
    assert len(stopped) == 3, stopped  # each worker, then the supervisor
    assert '"message": "stopped: every worker has exited"' in stopped[-1]


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_stop_when_the_supervisor_is_killed(zipapp_services):
    service = zipapp_services.start("-workers", "2", "-access-log", "all")  # each line names its worker
    assert settled(lambda: len(children_of(service.process.pid)), 2) == 2
    workers = children_of(service.process.pid)
    service.process.kill()  # SIGKILL: the supervisor forwards nothing
    service.process.wait(10)
    assert settled(lambda: [pid for pid in workers if alive(pid)], []) == []


def test_workers_that_cannot_start_stop_the_service_with_status_1(zipapp_services, tmp_path):
    # The default store, Datastore, has no credentials in the minimal environment: every worker fails.
    port = free_port()
    service = zipapp_services.launch(
        ["-private-key-path", zipapp_services._key_file("RS256"), "-port", port, "-workers", "2"], port
    )
    assert service.process.wait(60) == 1
    output = service.output()
    assert "Traceback" not in output
    # The first worker to fail stops the other, which may not have got as far as its own error line.
    errors = [line for line in output.splitlines() if line.startswith("token-exchange: error: ")]
    assert 1 <= len(errors) <= 2, output
    assert all(line in errors or json.loads(line) for line in output.splitlines() if line.strip()), output


def test_sigterm_while_workers_start_stops_the_service_with_status_0(zipapp_services):
    port = free_port()
    service = zipapp_services.launch(
        [
            "-store",
            f"sqlite:{zipapp_services._db_path}",
            "-private-key-path",
            zipapp_services._key_file("RS256"),
            "-port",
            port,
            "-workers",
            "2",
        ],
        port,
    )
    # The supervisor says so once it has forked; the workers are then still starting.
    assert settled(lambda: "supervising 2 workers" in service.output(), True), service.output()
    assert service.signal_and_wait(signal.SIGTERM, timeout=30) == 0, service.output()
    assert "exited with status" not in service.output()


def test_metrics_address_in_use_stops_the_workers_and_start_up_with_one_line(
    built_zipapps, zipapp_home, key_file, db_path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = run_zipapp(
            built_zipapps["token-exchange"],
            [
                "-private-key-path",
                str(key_file()),
                "-store",
                f"sqlite:{db_path}",
                "-port",
                free_port(),
                "-workers",
                "2",
                "-prometheusx.listen-address",
                address,
            ],
            zipapp_home,
            timeout=60,
        )
    assert done.returncode == 1  # as with one process: the workers it had started are stopped first
    assert (
        error_line(done, "token-exchange")
        == f"token-exchange: error: cannot serve metrics on {address}: Address already in use"
    )


# The supervisor forks its workers with os.fork wrapped so that a SIGTERM reaches the supervisor
# right after its first fork, before its second: the moment a signal used to reach only the first.
SIGTERM_BETWEEN_FORKS = """
import os, signal, sys
from token_exchange.cli import service as server
real_fork, forked = os.fork, []
def fork_then_signal():
    pid = real_fork()
    if pid:
        forked.append(pid)
        if len(forked) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    return pid
os.fork = fork_then_signal
server.main(sys.argv[1:])
"""


def test_sigterm_between_two_forks_stops_every_worker(key_file, db_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SIGTERM_BETWEEN_FORKS,
            "-private-key-path",
            str(key_file()),
            "-store",
            f"sqlite:{db_path}",
            "-port",
            str(free_port()),
            "-workers",
            "3",
            "-prometheusx.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the supervisor and any worker the signal missed
        output, _ = process.communicate()
        pytest.fail("the supervisor still waited for a worker the signal never reached:\n" + output)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
