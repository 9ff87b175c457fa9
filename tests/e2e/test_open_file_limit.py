"""More connections than the open-file limit allows: the service closes the idle ones and goes on serving."""

import http.client
import resource
import time

import pytest

from tests.zipapp_service import metric_values

# Low enough that a few hundred connections reach it, high enough for the service's own files.
OPEN_FILES = 128
CONNECTIONS = 3 * OPEN_FILES


@pytest.fixture
def enough_open_files_here():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTIONS + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the test process may open only {hard} files")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def kept_alive_health(port):
    """A connection that has had one /health answered and stays open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    answer = conn.getresponse()
    assert (answer.status, answer.read()) == (200, b"ok")
    return conn


def test_idle_connections_beyond_the_open_file_limit_are_closed_to_make_room(zipapp_services, enough_open_files_here):
    service = zipapp_services.start(open_files=OPEN_FILES)
    lines_at_start = len(service.output().splitlines())
    started = time.monotonic()
    connections = []
    try:
        # Each new connection is answered, though twice the limit's worth stay open on this side.
        for _ in range(CONNECTIONS):
            connections.append(kept_alive_health(service.port))
        # The oldest were closed by the service to make room; the newest still serve.
        oldest, newest = connections[0], connections[-1]
        oldest.request("GET", "/health")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            oldest.getresponse()
        newest.request("GET", "/health")
        assert newest.getresponse().read() == b"ok"
    finally:
        for conn in connections:
            conn.close()
    minutes = (time.monotonic() - started) / 60
    output = service.output()
    assert "Traceback" not in output
    lines = output.splitlines()[lines_at_start:]
    failures = [line for line in lines if "cannot accept connections" in line]
    assert 1 <= len(failures) <= 1 + 6 * minutes, failures  # at most one line per 10 s
    assert "Too many open files (EMFILE)" in failures[0]
    assert f"open-file limit {OPEN_FILES}" in failures[0]
    errors = metric_values(service.metrics_url, "tokenexchange_accept_errors_total")
    assert errors[frozenset({("reason", "EMFILE")})] >= 1
    assert metric_values(service.metrics_url, "tokenexchange_connections_shed_total")[frozenset()] >= OPEN_FILES
    assert service.signal_and_wait() == 0
