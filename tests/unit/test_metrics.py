"""The service's metrics (observability/metrics.py) in process: the verifier's events feed the cache,
queue and refusal metrics of a registry of its own."""

from prometheus_client import generate_latest

from tests.support import missing_documented_metrics, samples, value
from token_exchange.observability.metrics import ServiceMetrics, exposition_registry


def test_verifier_events_feed_cache_and_queue_metrics():
    metrics = ServiceMetrics()  # a registry of its own, as each service has
    events = metrics.verifier_events
    events.cache_miss()
    events.cache_hit()
    events.cache_hit()
    events.verification_queued(3)
    events.verification_refused("throttled")
    got = samples(metrics.registry)
    assert value(got, "tokenexchange_verification_cache_total", result="hit") == 2
    assert value(got, "tokenexchange_verification_cache_total", result="miss") == 1
    assert value(got, "tokenexchange_hashing_queue_depth") == 3
    assert value(got, "tokenexchange_verifications_refused_total", result="throttled") == 1
    events.verification_done(0)
    assert value(samples(metrics.registry), "tokenexchange_hashing_queue_depth") == 0


def test_every_documented_metric_is_exposed_at_zero_before_any_event():
    assert missing_documented_metrics(generate_latest(ServiceMetrics().registry).decode()) == []


def test_a_worker_file_not_yet_sized_does_not_fail_the_scrape(tmp_path):
    # A starting worker creates its file, then sizes it: a scrape in between finds it empty.
    (tmp_path / "counter_4242.db").write_bytes(b"")
    assert generate_latest(exposition_registry(str(tmp_path))) == b""
