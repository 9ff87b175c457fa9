"""Each connection's stream: Tornado's IOStream, answering in Go's words where Tornado answers itself.

Tornado refuses a request it cannot parse with a bare "HTTP/1.1 400 Bad
Request" and no body, and closes a connection whose request line and
headers outgrow max_header_size without a word. Go's net/http answers both
with a plain-text status line as the body; so does this stream, byte for
byte as Go writes them (its server.go, errorHeaders):

    HTTP/1.1 400 Bad Request
    HTTP/1.1 431 Request Header Fields Too Large

Only IOStream's public methods are overridden.
"""

from tornado.iostream import IOStream, UnsatisfiableReadError

# What Tornado writes for a malformed request (tornado.http1connection), and Go's answer instead.
TORNADO_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_GO_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request" + _GO_HEADERS + b"400 Bad Request"
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large" + _GO_HEADERS + b"431 Request Header Fields Too Large"
)


class ServiceIOStream(IOStream):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reading_head = False

    def write(self, data):
        if data == TORNADO_BAD_REQUEST:
            data = BAD_REQUEST
        return super().write(data)

    def read_until_regex(self, regex, max_bytes=None):
        # Tornado reads a request's head (request line and headers), and only that, this way: bounded by
        # max_header_size, it ends in UnsatisfiableReadError when the head is larger. Its other reads
        # (a body, a chunk's size line) come through read_bytes() and read_until().
        self._reading_head = True
        return super().read_until_regex(regex, max_bytes)

    def read_until(self, delimiter, max_bytes=None):
        self._reading_head = False
        return super().read_until(delimiter, max_bytes)

    def read_bytes(self, num_bytes, partial=False):
        self._reading_head = False
        return super().read_bytes(num_bytes, partial)

    def close(self, exc_info=False):
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if self._reading_head and isinstance(error, UnsatisfiableReadError) and not self.closed():
            try:
                self.socket.send(HEADERS_TOO_LARGE)  # best effort: the connection closes next
            except OSError:
                pass
        super().close(exc_info)
