"""Every error response the service sends, written in one place.

Handlers raise ApiError; BaseHandler.write_error turns it into the
contract's plain-text body. Bodies match the Go service byte for byte.
"""

from tornado.web import HTTPError

TEXT_PLAIN = "text/plain; charset=utf-8"
STORE_RETRY_AFTER_SECONDS = 1


class ApiError(HTTPError):
    def __init__(self, status_code, body, headers=None):
        super().__init__(status_code)
        self.body = body
        self.headers = headers or {}


def invalid_request_body():
    return ApiError(400, "Invalid request body\n")


def invalid_api_key():
    return ApiError(401, "Invalid API key\n")


def request_body_too_large():
    return ApiError(413, "Request body too large\n")


def failed_to_generate_token():
    return ApiError(500, "Failed to generate token\n")


def store_unavailable():
    return ApiError(503, "Key store unavailable, retry later\n",
                    {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


def verifications_overloaded(retry_after_seconds):
    return ApiError(503, "Too many key verifications pending, retry later\n",
                    {"Retry-After": str(retry_after_seconds)})


def key_throttled(retry_after_seconds):
    return ApiError(429, "Too many attempts for this key, retry later\n",
                    {"Retry-After": str(retry_after_seconds)})


def method_not_allowed(allowed_methods):
    return ApiError(405, "Method not allowed\n", {"Allow": ", ".join(allowed_methods)})


# Bodies for errors Tornado raises itself, by status.
GENERIC_BODIES = {
    400: "Bad request\n",
    404: "404 page not found\n",
    500: "Internal server error\n",
}


def generic_body(status_code):
    return GENERIC_BODIES.get(status_code, f"HTTP error {status_code}\n")
