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


def request(base_url, method, path, body=None, headers=None, timeout=30):
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def exchange(base_url, endpoint, api_key):
    """POST {"api_key": api_key} to /v0/token/<endpoint>."""
    return request(
        base_url,
        "POST",
        f"/v0/token/{endpoint}",
        json.dumps({"api_key": api_key}),
        {"Content-Type": "application/json"},
    )
