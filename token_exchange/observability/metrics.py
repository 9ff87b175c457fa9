"""Prometheus metrics: the Go service's four, plus what an operator needs.

The metric objects live on a ServiceMetrics instance made at start-up and
handed down, so tests can give each service its own registry. Label values
come from small fixed sets (code, method, operation, audience, result):
never a key, a key id or an integration id, which would be unbounded.

The metrics every request updates (requests, durations, tokens issued,
verification-cache lookups) are loopmetrics' plain-addition kind in a
single process. With several worker processes prometheus_client's
multiprocess mode sums them; PROMETHEUS_MULTIPROC_DIR must be set before
prometheus_client is imported, which is why server.py imports this module
only after that.
"""

import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from token_exchange.cli.flags import split_listen_address
from token_exchange.observability.loopmetrics import LoopCounter, LoopHistogram
from token_exchange.store import KeyStore

# The Go service's metrics: one counter and one histogram per token endpoint (named after its audience).
ENDPOINT_METRICS = {
    "/v0/token/autojoin": "autojoin",
    "/v0/token/integration": "integration",
}
# A client may send any method name (answered 405): others are counted as "other".
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class ServiceMetrics:
    def __init__(self, registry=None, multiprocess=False):
        """multiprocess: the values go to PROMETHEUS_MULTIPROC_DIR, for a supervisor to sum (-workers)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        # What every request updates: plain additions on the event loop (loopmetrics), unless
        # the values must reach other processes through prometheus_client's files.
        if multiprocess:
            per_request_counter, per_request_histogram = Counter, Histogram
        else:
            per_request_counter, per_request_histogram = LoopCounter, LoopHistogram
        self._requests = {}
        self._durations = {}
        for path, name in ENDPOINT_METRICS.items():
            self._requests[path] = per_request_counter(
                f"tokenexchange_{name}_requests", f"Requests to the {name} token endpoint.",
                ["code", "method"], registry=reg)
            self._durations[path] = per_request_histogram(
                f"tokenexchange_{name}_request_duration_seconds",
                f"Time to answer a request to the {name} token endpoint.",
                ["code", "method"], registry=reg)  # prometheus_client's defaults are Prometheus' defaults
        self.store_call_seconds = Histogram(
            "tokenexchange_store_call_duration_seconds", "Time a key-store call took, by operation.",
            ["operation"], registry=reg)
        self.store_errors = Counter(
            "tokenexchange_store_errors", "Key-store calls that failed, by operation.",
            ["operation"], registry=reg)
        self.verification_cache = per_request_counter(
            "tokenexchange_verification_cache", "Verification-cache lookups, by result (hit or miss).",
            ["result"], registry=reg)
        # livesum: across workers, the sum over the processes still running.
        self.hashing_queue_depth = Gauge(
            "tokenexchange_hashing_queue_depth", "Secret verifications waiting for or running on a hashing thread.",
            registry=reg, multiprocess_mode="livesum")
        self.verifications_refused = Counter(
            "tokenexchange_verifications_refused",
            "Secret checks refused before hashing, by result (overloaded: 503, throttled: 429).",
            ["result"], registry=reg)
        self.tokens_issued = per_request_counter(
            "tokenexchange_tokens_issued", "Tokens signed and sent, by audience.",
            ["audience"], registry=reg)
        self.verifier_events = VerifierEvents(self)
        # Looking up a labelled child costs more than using it: every request
        # uses the children made by the first request of its kind.
        # (path, status, method) -> (counter child, histogram child, tokens-issued child or None)
        self._request_children = {}

    def observe_request(self, method, path, status, seconds):
        """Count a finished request, if it went to a token endpoint; a 200 there sent a token."""
        children = self._request_children.get((path, status, method))
        if children is None:
            if path not in self._requests:
                return
            labels = dict(code=str(status), method=method.lower() if method in KNOWN_METHODS else "other")
            issued = self.tokens_issued.labels(audience=ENDPOINT_METRICS[path]) if status == 200 else None
            children = self._requests[path].labels(**labels), self._durations[path].labels(**labels), issued
            if method in KNOWN_METHODS:  # the memo stays as bounded as the labels
                self._request_children[(path, status, method)] = children
        counter, histogram, issued = children
        counter.inc()
        histogram.observe(seconds)
        if issued is not None:
            issued.inc()

    def timed_store(self, store):
        return TimedKeyStore(store, self)


class VerifierEvents:
    """What the key verifier reports (its events= argument)."""

    def __init__(self, metrics):
        self._metrics = metrics
        self._cache_misses = metrics.verification_cache.labels(result="miss")
        # Every warm exchange reports a hit: the counter's own inc(), one call less than a method around it.
        self.cache_hit = metrics.verification_cache.labels(result="hit").inc

    def cache_miss(self):
        self._cache_misses.inc()

    def verification_queued(self, depth):
        self._metrics.hashing_queue_depth.set(depth)

    def verification_done(self, depth):
        self._metrics.hashing_queue_depth.set(depth)

    def verification_refused(self, reason):
        self._metrics.verifications_refused.labels(result=reason).inc()


class TimedKeyStore(KeyStore):
    """A KeyStore that times every call of the store it wraps, by operation."""

    def __init__(self, store, metrics):
        self._store = store
        self._metrics = metrics

    def _timed(self, operation, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception:
            self._metrics.store_errors.labels(operation=operation).inc()
            raise
        finally:
            self._metrics.store_call_seconds.labels(operation=operation).observe(time.perf_counter() - started)

    def get_integration_key(self, integration_id, key_id):
        return self._timed("get_integration_key", self._store.get_integration_key, integration_id, key_id)

    def find_autojoin_org(self, api_key):
        return self._timed("find_autojoin_org", self._store.find_autojoin_org, api_key)

    def ensure_integration(self, integration_id, description=""):
        return self._timed("ensure_integration", self._store.ensure_integration, integration_id, description)

    def add_integration_key(self, integration_id, key_id, key_hash, description="", tier=0):
        return self._timed("add_integration_key", self._store.add_integration_key, integration_id, key_id,
                           key_hash, description, tier)

    def ensure_organization(self, name, email=""):
        return self._timed("ensure_organization", self._store.ensure_organization, name, email)

    def add_autojoin_key(self, org, api_key):
        return self._timed("add_autojoin_key", self._store.add_autojoin_key, org, api_key)

    def list_integrations(self, integration_id=None):
        return self._timed("list_integrations", self._store.list_integrations, integration_id)

    def update_integration_key(self, integration_id, key_id, status=None, tier=None):
        return self._timed("update_integration_key", self._store.update_integration_key, integration_id, key_id,
                           status, tier)

    def list_organizations(self, org=None):
        return self._timed("list_organizations", self._store.list_organizations, org)

    def delete_autojoin_key(self, fingerprint_prefix, org=None):
        return self._timed("delete_autojoin_key", self._store.delete_autojoin_key, fingerprint_prefix, org)

    def check(self):
        return self._timed("check", self._store.check)

    def close(self):
        self._store.close()

    def __getattr__(self, name):
        # Methods a store gains later (listing, revoking) pass through untimed.
        return getattr(self._store, name)


def exposition_registry(multiprocess_dir=None):
    """The registry /metrics serves: this process's, or the sum over every worker's files."""
    if multiprocess_dir is None:
        return None
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    return registry


def start_metrics_server(address, registry):
    """Serve /metrics on a [HOST]:PORT address in a background thread."""
    host, port = split_listen_address(address)
    prometheus_client.start_http_server(port, addr=host or "0.0.0.0", registry=registry)


def mark_worker_dead(pid, multiprocess_dir):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiprocess_dir)
