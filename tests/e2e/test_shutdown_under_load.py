"""SIGTERM under load on kept-alive connections: every request sent is answered, with 1 and 2 workers."""

import asyncio
import json
import signal

import pytest

from tests.keepalive_load import keep_alive_load

CONNECTIONS = 50
RUNS = 3


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_loses_no_request_on_kept_alive_connections(zipapp_services, integration_key, workers):
    key = integration_key()
    body = json.dumps({"api_key": key.api_key}).encode()
    for _ in range(RUNS):
        service = zipapp_services.start("-workers", str(workers))
        request = (
            b"POST /v0/token/integration HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (service.port, len(body), body)
        )

        async def stop(service=service):
            service.process.send_signal(signal.SIGTERM)

        result = asyncio.run(keep_alive_load("127.0.0.1", service.port, request, CONNECTIONS, stop))
        assert service.process.wait(60) == 0, service.output()
        # Every request sent whole got its whole answer; each client ended refused, after the service stopped.
        assert result.lost == 0, (result, service.output())
        assert result.statuses.keys() == {200}
        assert result.answered >= CONNECTIONS
        assert result.refused == CONNECTIONS
