"""Prometheus metrics: the Go service's four, plus what an operator needs.

The metric objects live on a ServiceMetrics instance made at start-up and
handed down, so tests can give each service its own registry. Label values
come from small fixed sets (code, method, operation, audience, result):
never a key, a key id or an integration id, which would be unbounded.

With several worker processes prometheus_client's multiprocess mode sums
the workers' values; PROMETHEUS_MULTIPROC_DIR must be set before
prometheus_client is imported, which is why the service imports this
module only after that (cli.workers).
"""

import glob
import os
import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from token_exchange.cli.flags import split_listen_address
from token_exchange.verification.verifier import VerifierEvents
from token_exchange.web.accepting import AcceptEvents

# The Go service's metrics: one counter and one histogram per token endpoint (named after its audience).
ENDPOINT_METRICS = {
    "/v0/token/autojoin": "autojoin",
    "/v0/token/integration": "integration",
}
# A client may send any method name (answered 405): others are counted as "other".
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# The fixed label values, whose series exist (at zero) from start: a scrape shows every metric before its
# first event, and rate() counts that first event. In multiprocess mode a labelled metric without a child
# is not exposed at all, HELP included. Of code and method only the success of each token endpoint is known
# up front; other pairs appear with their first request.
SUCCESS_LABELS = {"code": "200", "method": "post"}
STORE_OPERATIONS = ("get_integration_key", "find_autojoin_org", "check")
CACHE_RESULTS = ("hit", "miss")
REFUSAL_RESULTS = ("overloaded", "throttled")  # verifier.VerifierEvents.verification_refused
# accepting.Acceptor reports any errno by name; these two are running out of descriptors.
ACCEPT_ERRORS = ("EMFILE", "ENFILE")


class ServiceMetrics:
    def __init__(self, registry=None):
        """registry: where the metrics register (a new one if None). In a worker process, values go to
        PROMETHEUS_MULTIPROC_DIR whatever the registry, for the supervisor to sum."""
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self._requests = {}
        self._durations = {}
        for path, name in ENDPOINT_METRICS.items():
            self._requests[path] = Counter(
                f"tokenexchange_{name}_requests",
                f"Requests to the {name} token endpoint.",
                ["code", "method"],
                registry=reg,
            )
            self._durations[path] = Histogram(
                f"tokenexchange_{name}_request_duration_seconds",
                f"Time to answer a request to the {name} token endpoint.",
                ["code", "method"],
                registry=reg,
            )  # prometheus_client's defaults are Prometheus' defaults
        self.store_call_seconds = Histogram(
            "tokenexchange_store_call_duration_seconds",
            "Time a key-store call took, by operation.",
            ["operation"],
            registry=reg,
        )
        self.store_errors = Counter(
            "tokenexchange_store_errors", "Key-store calls that failed, by operation.", ["operation"], registry=reg
        )
        self.verification_cache = Counter(
            "tokenexchange_verification_cache",
            "Verification-cache lookups, by result (hit or miss).",
            ["result"],
            registry=reg,
        )
        # livesum: across workers, the sum over the processes still running.
        self.hashing_queue_depth = Gauge(
            "tokenexchange_hashing_queue_depth",
            "Secret verifications waiting for or running on a hashing thread.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.verifications_refused = Counter(
            "tokenexchange_verifications_refused",
            "Secret checks refused before hashing, by result (overloaded: 503, throttled: 429).",
            ["result"],
            registry=reg,
        )
        self.tokens_issued = Counter(
            "tokenexchange_tokens_issued", "Tokens signed and sent, by audience.", ["audience"], registry=reg
        )
        self.accept_errors = Counter(
            "tokenexchange_accept_errors",
            "Connections that could not be accepted, by errno (EMFILE: the open-file limit).",
            ["reason"],
            registry=reg,
        )
        self.connections_shed = Counter(
            "tokenexchange_connections_shed",
            "Idle connections closed to make room when a connection could not be accepted.",
            registry=reg,
        )
        for path, audience in ENDPOINT_METRICS.items():
            self._requests[path].labels(**SUCCESS_LABELS)
            self._durations[path].labels(**SUCCESS_LABELS)
            self.tokens_issued.labels(audience=audience)
        for operation in STORE_OPERATIONS:
            self.store_call_seconds.labels(operation=operation)
            self.store_errors.labels(operation=operation)
        for result in CACHE_RESULTS:
            self.verification_cache.labels(result=result)
        for result in REFUSAL_RESULTS:
            self.verifications_refused.labels(result=result)
        for reason in ACCEPT_ERRORS:
            self.accept_errors.labels(reason=reason)
        self.verifier_events = VerifierMetrics(self)
        self.accept_events = AcceptMetrics(self)
        # labels() looks a child up under a lock; every request of a kind uses the children the first one
        # looked up. (path, status, method) -> (request counter, duration histogram, tokens issued or None)
        self._request_children = {}

    def observe_request(self, method, path, status, seconds):
        """Count a finished request, if it went to a token endpoint; a 200 there sent a token."""
        children = self._request_children.get((path, status, method))
        if children is None:
            audience = ENDPOINT_METRICS.get(path)
            if audience is None:
                return
            labels = dict(code=str(status), method=method.lower() if method in KNOWN_METHODS else "other")
            issued = self.tokens_issued.labels(audience=audience) if status == 200 else None
            children = self._requests[path].labels(**labels), self._durations[path].labels(**labels), issued
            if method in KNOWN_METHODS:  # the memo stays as bounded as the labels
                self._request_children[(path, status, method)] = children
        requests, duration, issued = children
        requests.inc()
        duration.observe(seconds)
        if issued is not None:
            issued.inc()

    def timed_store(self, store):
        return TimedKeyStore(store, self)


class VerifierMetrics(VerifierEvents):
    """The key verifier's events (its events= argument), counted in the metrics."""

    def __init__(self, metrics):
        self._metrics = metrics
        self._cache_hits = metrics.verification_cache.labels(result="hit")
        self._cache_misses = metrics.verification_cache.labels(result="miss")

    def cache_hit(self):
        self._cache_hits.inc()

    def cache_miss(self):
        self._cache_misses.inc()

    def verification_queued(self, depth):
        self._metrics.hashing_queue_depth.set(depth)

    def verification_done(self, depth):
        self._metrics.hashing_queue_depth.set(depth)

    def verification_refused(self, reason):
        self._metrics.verifications_refused.labels(result=reason).inc()


class AcceptMetrics(AcceptEvents):
    """Accepting's events (connections.ServiceHTTPServer's accept_events), counted in the metrics."""

    def __init__(self, metrics):
        self._metrics = metrics

    def accept_failed(self, reason):
        self._metrics.accept_errors.labels(reason=reason).inc()

    def connections_shed(self, count):
        self._metrics.connections_shed.inc(count)


class TimedKeyStore:
    """The key store's read path, as the service uses it, with every call timed by operation."""

    def __init__(self, store, metrics):
        self._store = store
        self._metrics = metrics

    def _timed(self, operation, fn, *args):
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception:
            self._metrics.store_errors.labels(operation=operation).inc()
            raise
        finally:
            self._metrics.store_call_seconds.labels(operation=operation).observe(time.perf_counter() - started)

    def get_integration_key(self, integration_id, key_id):
        return self._timed("get_integration_key", self._store.get_integration_key, integration_id, key_id)

    def find_autojoin_org(self, api_key):
        return self._timed("find_autojoin_org", self._store.find_autojoin_org, api_key)

    def check(self):
        return self._timed("check", self._store.check)

    def close(self):
        self._store.close()


def exposition_registry(multiprocess_dir=None):
    """The registry /metrics serves: this process's, or the sum over every worker's files."""
    if multiprocess_dir is None:
        return None
    registry = CollectorRegistry()
    registry.register(WorkerFilesCollector(multiprocess_dir))
    return registry


class WorkerFilesCollector:
    """The workers' metric files summed, as prometheus_client's MultiProcessCollector sums them, less the
    files a starting worker has created but not yet sized: such an empty file fails the whole scrape
    (struct.error). A file is sized right after it is created and never empties again."""

    def __init__(self, multiprocess_dir):
        self._dir = multiprocess_dir

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [path for path in glob.glob(os.path.join(self._dir, "*.db")) if _sized(path)]
        return MultiProcessCollector.merge(files, accumulate=True)


def _sized(path):
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead worker's live gauge file, removed since the glob
        return False


def start_metrics_server(address, registry):
    """Serve /metrics on a [HOST]:PORT address in a background thread."""
    host, port = split_listen_address(address)
    prometheus_client.start_http_server(port, addr=host or "0.0.0.0", registry=registry)


def mark_worker_dead(pid, multiprocess_dir):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiprocess_dir)
