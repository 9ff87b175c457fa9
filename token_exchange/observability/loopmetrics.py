"""Counters and histograms that the request path updates with plain additions.

prometheus_client's metrics take a lock and four or five Python calls per
update; an exchange makes four updates, a measurable share of its own
work. These keep each labelled child's numbers in plain attributes,
written only by the event-loop thread, and build the samples when the
registry is collected (the metrics server's thread): under the GIL each
number is read whole, and the collector copies the children before it
reads them.

They offer the part of prometheus_client's API that ServiceMetrics uses,
labels(**values).inc() and labels(**values).observe(seconds), and expose
exactly the samples a prometheus_client Counter or Histogram would,
_created included (tests compare the two). They cannot serve
multiprocess mode, whose values live in files that prometheus_client
writes itself: workers use prometheus_client's own metrics.
"""

import bisect
import os
import time

from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

# prometheus_client's switch for _created samples, honoured the same way.
_USE_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


class _LoopMetric:
    _type = None

    def __init__(self, name, documentation, labelnames, registry):
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children = {}  # label values -> child
        registry.register(self)

    def labels(self, **labelvalues):
        key = tuple(str(labelvalues[name]) for name in self._labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _new_child(self):
        raise NotImplementedError

    def describe(self):
        # The registry checks names with this, instead of collecting at registration.
        return [Metric(self._name, self._documentation, self._type)]

    def collect(self):
        metric = Metric(self._name, self._documentation, self._type)
        for labelvalues, child in list(self._children.items()):  # a copy: the loop may add a child meanwhile
            child.add_samples(metric, self._name, dict(zip(self._labelnames, labelvalues)))
        return [metric]


class _CounterChild:
    __slots__ = ("value", "created")

    def __init__(self):
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount=1):
        self.value += amount

    def add_samples(self, metric, name, labels):
        metric.add_sample(name + "_total", labels, self.value)
        if _USE_CREATED:
            metric.add_sample(name + "_created", labels, self.created)


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)  # per bucket, not cumulative: one addition per observation
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount):
        # The first bucket whose upper bound is >= amount; the last bound is +Inf.
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def add_samples(self, metric, name, labels):
        counts = list(self.counts)
        total = 0.0
        for bound, count in zip(self.bounds, counts):
            total += count
            metric.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, total)
        metric.add_sample(name + "_count", labels, total)
        metric.add_sample(name + "_sum", labels, self.sum)
        if _USE_CREATED:
            metric.add_sample(name + "_created", labels, self.created)


class LoopCounter(_LoopMetric):
    """A labelled counter for the event-loop thread; its name takes "_total" in the exposition."""

    _type = "counter"

    def _new_child(self):
        return _CounterChild()


class LoopHistogram(_LoopMetric):
    """A labelled histogram for the event-loop thread, with prometheus_client's default buckets."""

    _type = "histogram"

    def __init__(self, name, documentation, labelnames, registry, buckets=Histogram.DEFAULT_BUCKETS):
        super().__init__(name, documentation, labelnames, registry)
        self._bounds = tuple(float(bound) for bound in buckets)
        if self._bounds[-1] != INF:
            self._bounds += (INF,)

    def _new_child(self):
        return _HistogramChild(self._bounds)
