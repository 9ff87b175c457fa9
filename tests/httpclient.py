"""A minimal HTTP client over real sockets, keeping exact bytes and headers."""

import http.client
import json
import urllib.parse
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def request(base_url, method, path, body=None, headers=None, timeout=30, source_address=None):
    """headers: a mapping, or a list of (name, value) pairs (a name may repeat); source_address: the
    (host, port) the client binds, e.g. ("127.0.0.2", 0) to come from another loopback address."""
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout, source_address=source_address)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(headers, list):
            conn.putrequest(method, path)
            for name, value in [*headers, ("Content-Length", str(len(body or b"")))]:
                conn.putheader(name, value)
            conn.endheaders(body)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def exchange(base_url, endpoint, api_key, headers=(), source_address=None):
    """POST {"api_key": api_key} to /v0/token/<endpoint>, with more headers as (name, value) pairs."""
    return request(
        base_url,
        "POST",
        f"/v0/token/{endpoint}",
        json.dumps({"api_key": api_key}),
        [("Content-Type", "application/json"), *headers],
        source_address=source_address,
    )
