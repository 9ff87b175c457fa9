"""A minimal HTTP client over real sockets, keeping exact bytes and headers."""

import http.client
import json
import socket
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


def send_headers_awaiting_body(conn, body_length, path="/v0/token/integration"):
    """On a raw socket, send a POST's headers only, with "Expect: 100-continue", and return the interim
    answer once the service sends it: from then on it has read the headers, however busy the machine."""
    conn.sendall(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
        % (path.encode(), body_length)
    )
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        interim += conn.recv(1)
    return interim


def raw_request(port, data, timeout=10):
    """Send raw bytes to 127.0.0.1:port; what comes back until the service closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(data)
        except ConnectionResetError:
            pass  # answered and closed before all was sent: what came back is still there to read
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received
