"""Plain helpers and constants shared by test modules of several tiers (fixtures live in the conftest.py files)."""

import os
import pathlib
import re
import sys
import threading
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from token_exchange.verification.secrethash import verify_secret
from token_exchange.verification.verifier import VerifierEvents

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
# Low bcrypt cost keeps the suite fast; one test covers the default cost.
TEST_BCRYPT_COST = 4
ALGS = ("RS256", "ES256", "EdDSA")


def plain_python():
    """The interpreter a user would run the zipapps with: no virtualenv, no project on the path."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.environ.get("TEST_ZIPAPP_PYTHON", base)


# Integration API keys, well-formed and malformed (the README's key format and limits).

SECRET = "s" * 43


def key(integration_id="acme", key_id="ki_0123456789abcdef", secret=SECRET):
    return f"mlabk.cii_{integration_id}.{key_id}.{secret}"


MALFORMED = {
    "empty": "",
    "no prefix": "cii_acme.ki_1.secret",
    "wrong prefix": "mlabx.cii_acme.ki_1.secret",
    "prefix only": "mlabk.",
    "two parts": "mlabk.cii_acme.ki_1",
    "four parts": "mlabk.cii_acme.ki_1.sec.ret",
    "no cii_": "mlabk.acme.ki_1.secret",
    "empty integration id": "mlabk.cii_.ki_1.secret",
    "integration id 65 bytes": key(integration_id="i" * 65),
    "integration id 65 bytes utf-8": key(integration_id="é" * 32 + "i"),
    "no ki_": "mlabk.cii_acme.kx_1.secret",
    "key id only ki_": "mlabk.cii_acme.ki_.secret",
    "key id 65 bytes": key(key_id="ki_" + "k" * 62),
    "empty secret": key(secret=""),
    "secret 129 bytes": key(secret="s" * 129),
    "whole key 301 bytes": "mlabk.cii_a.ki_b." + "s" * 284,
    "lone surrogate": key(secret="\ud800"),
    "empty parts": "mlabk...",
}


# SQLite files.

SQLITE_SUFFIXES = ("", "-wal", "-shm")


def remove_database(db_path):
    """Remove an SQLite database as an operator would: the file and its -wal and -shm files."""
    for suffix in SQLITE_SUFFIXES:
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)


# Metrics, read from a registry as Prometheus would scrape it.

ALLOWED_LABELS = {"code", "method", "operation", "audience", "result", "reason", "le"}


def samples(registry):
    """{(name, frozenset(labels)): value} of every sample the registry exposes."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_samples, name, **labels):
    return all_samples.get((name, frozenset(labels.items())), 0.0)


@dataclass(frozen=True)
class DocumentedMetric:
    name: str
    type: str
    labels: dict  # label name -> the values the table lists for it (none for code, method)


# A label cell: `name`, optionally followed by its values in brackets: `result` (`hit`, `miss`).
_LABEL = re.compile(r"`(\w+)`(?:\s*\(([^)]*)\))?")


def documented_metrics():
    """The rows of the metrics table in docs/operations.md: what the service must expose from start."""
    section = (ROOT / "docs" / "operations.md").read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    metrics = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        name, kind, labels = (cell.strip() for cell in line.strip("|").split("|")[:3])
        metrics.append(
            DocumentedMetric(
                name.strip("`"),
                kind,
                {label: re.findall(r"`([^`]+)`", values) for label, values in _LABEL.findall(labels)},
            )
        )
    assert len(metrics) >= 10 and all(m.name.startswith("tokenexchange_") for m in metrics), metrics
    return metrics


def missing_documented_metrics(exposition):
    """What a fresh service's /metrics text lacks of the table in docs/operations.md: HELP, TYPE, the listed
    label values, zero values. Empty when it shows every documented metric."""
    samples = [s for family in text_string_to_metric_families(exposition) for s in family.samples]
    problems = []
    for metric in documented_metrics():
        if not re.search(rf"^# HELP {metric.name} \S", exposition, re.MULTILINE):
            problems.append(f"{metric.name}: no HELP")
        if f"\n# TYPE {metric.name} {metric.type}\n" not in exposition:
            problems.append(f"{metric.name}: no TYPE {metric.type}")
        names = {metric.name}
        if metric.type == "histogram":
            names = {metric.name + end for end in ("_bucket", "_count", "_sum")}
        own = [s for s in samples if s.name in names]
        if not own:
            problems.append(f"{metric.name}: no sample")
        if any(s.value != 0 for s in own):
            problems.append(f"{metric.name}: not zero: {own}")
        if any(set(s.labels) - {"le"} != set(metric.labels) for s in own):
            problems.append(f"{metric.name}: labels other than {sorted(metric.labels)}: {own}")
        for label, values in metric.labels.items():
            shown = {s.labels.get(label) for s in own}
            if not set(values) <= shown:
                problems.append(f"{metric.name}: {label} shows {sorted(map(str, shown))}, not all of {values}")
    return problems


# bcrypt checks, counted and held.


class RecordingEvents(VerifierEvents):
    """The verifier's events (its events= argument), in the order they came."""

    def __init__(self):
        self.seen = []

    def cache_hit(self):
        self.seen.append("hit")

    def cache_miss(self):
        self.seen.append("miss")

    def verification_queued(self, depth):
        self.seen.append(("queued", depth))

    def verification_done(self, depth):
        self.seen.append(("done", depth))

    def verification_refused(self, reason):
        self.seen.append(("refused", reason))


class CountingVerify:
    """verify_secret, counting calls; while hold is set, calls wait for release."""

    def __init__(self):
        self.calls = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def hold(self):
        self.release.clear()

    def __call__(self, secret, stored_hash):
        with self._lock:
            self.calls += 1
        self.started.release()
        assert self.release.wait(30)
        return verify_secret(secret, stored_hash)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def plain_id(value):
    """A parametrized test's id in printable ASCII without backslashes (a backslash written as "~").

    pytest run twice in one process (as mutmut does, docs/mutation-testing.md) no longer finds ids holding
    escapes such as \\xff, so the tests whose values hold them name their cases with this.
    """
    return ascii(value).replace("\\", "~")
