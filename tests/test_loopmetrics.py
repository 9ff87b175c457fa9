"""The event-loop metrics expose what prometheus_client's own Counter and Histogram expose."""

import re
import sys
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from token_exchange.observability.loopmetrics import LoopCounter, LoopHistogram
from token_exchange.observability.metrics import ServiceMetrics

# Durations at, just above and below bucket bounds, zero, and beyond the last finite bound.
DURATIONS = (0.0, 0.004, 0.005, 0.0050001, 0.01, 0.3, 0.75, 2.5, 9.99, 10.0, 11.0, 120.0)


def exposition(registry):
    """The registry's text, with _created timestamps (the time each child was made) blanked."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


def test_loop_metrics_expose_the_same_text_as_prometheus_client_metrics():
    texts = []
    for counter_class, histogram_class in ((Counter, Histogram), (LoopCounter, LoopHistogram)):
        registry = CollectorRegistry()
        requests = counter_class("demo_requests", "Requests.", ["code", "method"], registry=registry)
        durations = histogram_class("demo_duration_seconds", "Durations.", ["code", "method"], registry=registry)
        for code in ("200", "401"):
            for seconds in DURATIONS:
                requests.labels(code=code, method="post").inc()
                durations.labels(code=code, method="post").observe(seconds)
        requests.labels(code="405", method="get").inc(2)
        texts.append(exposition(registry))
    prometheus_text, loop_text = texts
    assert 'demo_duration_seconds_bucket{code="200",le="0.005",method="post"} 3.0' in loop_text
    assert 'demo_requests_total{code="405",method="get"} 2.0' in loop_text
    assert loop_text == prometheus_text


def test_service_metrics_expose_the_same_text_in_both_modes():
    texts = []
    for multiprocess in (True, False):  # without PROMETHEUS_MULTIPROC_DIR, prometheus_client keeps values in memory
        metrics = ServiceMetrics(multiprocess=multiprocess)
        for seconds in DURATIONS:
            metrics.observe_request("POST", "/v0/token/integration", 200, seconds)  # a token issued too
            metrics.verifier_events.cache_hit()
        metrics.observe_request("BREW", "/v0/token/autojoin", 405, 0.001)
        metrics.observe_request("GET", "/health", 200, 0.001)  # not a token endpoint: not counted
        metrics.verifier_events.cache_miss()
        texts.append(exposition(metrics.registry))
    assert 'tokenexchange_integration_requests_total{code="200",method="post"} 12.0' in texts[1]
    assert 'tokenexchange_autojoin_requests_total{code="405",method="other"} 1.0' in texts[1]
    assert 'tokenexchange_tokens_issued_total{audience="integration"} 12.0' in texts[1]
    assert 'tokens_issued_total{audience="autojoin"}' not in texts[1]
    assert texts[1] == texts[0]


def test_a_scrape_while_the_loop_adds_children_and_counts_sees_whole_numbers():
    registry = CollectorRegistry()
    requests = LoopCounter("demo_requests", "Requests.", ["code"], registry=registry)
    durations = LoopHistogram("demo_duration_seconds", "Durations.", ["code"], registry=registry)
    done = threading.Event()
    errors = []

    def scrape():
        while not done.is_set():
            try:
                generate_latest(registry)
            except Exception as e:  # e.g. a dict that changed size while it was read
                errors.append(e)
                return

    scraper = threading.Thread(target=scrape)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible, mid-collection included
    scraper.start()
    try:
        for i in range(20000):
            code = str(100 + i % 500)  # a new child now and then while the scraper reads
            requests.labels(code=code).inc()
            durations.labels(code=code).observe(0.001 * (i % 50))
    finally:
        done.set()
        scraper.join(10)
        sys.setswitchinterval(switch_interval)
    assert errors == []
    text = generate_latest(registry).decode()
    totals = [float(v) for v in re.findall(r"^demo_requests_total\{[^}]*\} (\S+)$", text, re.M)]
    counts = [float(v) for v in re.findall(r"^demo_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)]
    assert (len(totals), sum(totals), sum(counts)) == (500, 20000, 20000)
