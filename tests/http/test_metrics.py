"""The service's Prometheus metrics, counted through real requests to the in-process app
(a metrics registry of its own per service)."""

from prometheus_client import generate_latest

from tests.consumer import verify_token
from tests.httpclient import exchange, request
from tests.support import ALLOWED_LABELS, samples, value
from token_exchange.store import StoreUnavailable


def test_requests_tokens_and_store_calls_are_counted(service, integration_key, autojoin_key):
    key = integration_key("acme")
    autojoin = autojoin_key("example-org")
    for _ in range(3):
        response = exchange(service.base_url, "integration", key.api_key)
        assert response.status == 200
        verify_token(service.base_url, response.json()["token"], "integration")
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "x").status == 401
    assert exchange(service.base_url, "autojoin", autojoin.api_key).status == 200
    assert request(service.base_url, "GET", "/v0/token/autojoin").status == 405
    assert request(service.base_url, "GET", "/health").status == 200

    service.settle()
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_integration_requests_total", code="200", method="post") == 3
    assert value(got, "tokenexchange_integration_requests_total", code="401", method="post") == 1
    assert value(got, "tokenexchange_autojoin_requests_total", code="200", method="post") == 1
    assert value(got, "tokenexchange_autojoin_requests_total", code="405", method="get") == 1
    assert value(got, "tokenexchange_integration_request_duration_seconds_count", code="200", method="post") == 3
    # Prometheus' default buckets.
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in got
        if name == "tokenexchange_integration_request_duration_seconds_bucket" and ("code", "200") in labels
    )
    assert buckets == [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf")]
    assert value(got, "tokenexchange_tokens_issued_total", audience="integration") == 3
    assert value(got, "tokenexchange_tokens_issued_total", audience="autojoin") == 1
    assert value(got, "tokenexchange_store_call_duration_seconds_count", operation="get_integration_key") == 4
    assert value(got, "tokenexchange_store_call_duration_seconds_count", operation="find_autojoin_org") == 1
    # /health is no token endpoint: no metric names it.
    assert not any("/health" in str(labels) for _, labels in got)
    # Only bounded labels; no key, key id or integration id anywhere.
    text = generate_latest(service.metrics.registry).decode()
    for name, labels in got:
        assert {label for label, _ in labels} <= ALLOWED_LABELS, name
    for secretish in (key.api_key, key.key_id, "acme", autojoin.api_key, "example-org"):
        assert secretish not in text


def test_made_up_methods_share_one_method_label(service):
    for method in ("BREW", "PROPFIND", "X-7f3a", "post"):
        assert request(service.base_url, method, "/v0/token/integration").status == 405
    assert request(service.base_url, "POST", "/v0/token/integration", b"{}").status == 401
    service.settle()
    got = samples(service.metrics.registry)
    methods = {dict(labels)["method"] for name, labels in got if name == "tokenexchange_integration_requests_total"}
    assert methods == {"other", "post"}
    assert value(got, "tokenexchange_integration_requests_total", code="405", method="other") == 4


def test_store_errors_are_counted_by_operation(service, integration_key, monkeypatch):
    key = integration_key("acme")

    def unavailable(*args):
        raise StoreUnavailable("sqlite read failed: test")

    monkeypatch.setattr(service.key_store, "get_integration_key", unavailable)
    assert exchange(service.base_url, "integration", key.api_key).status == 503
    service.settle()
    got = samples(service.metrics.registry)
    assert value(got, "tokenexchange_store_errors_total", operation="get_integration_key") == 1
    assert value(got, "tokenexchange_integration_requests_total", code="503", method="post") == 1


def test_the_verifier_reports_cache_and_queue_through_requests(service, integration_key):
    key = integration_key("acme")
    for _ in range(3):
        assert exchange(service.base_url, "integration", key.api_key).status == 200
    assert exchange(service.base_url, "integration", key.api_key[:-1] + "x").status == 401
    service.settle()
    got = samples(service.metrics.registry)
    # One bcrypt check for the first exchange and one for the wrong secret; the repeats hit the cache.
    assert value(got, "tokenexchange_verification_cache_total", result="miss") == 2
    assert value(got, "tokenexchange_verification_cache_total", result="hit") == 2
    assert value(got, "tokenexchange_hashing_queue_depth") == 0
