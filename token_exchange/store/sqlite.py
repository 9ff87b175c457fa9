"""Embedded key store on one SQLite file, for running without a cloud.

The same tables as the Datastore kinds, with the namespace as a column so
-client-integration-ns and -platform-ns keep their meaning. No plaintext
secret is stored: integration keys keep their bcrypt (or SHA-256) hash, and
autojoin keys, which carry no id to look up by, are kept and found by their
SHA-256.

WAL mode lets the service read while a tool writes to the same file. A
connection serves one thread at a time (a small pool of them), and writers
wait on a lock for a while (busy timeout) instead of failing at once.

Open connections would keep reading a file deleted or replaced under them
for as long as the process runs, so every call first checks that the file at
the path is the one they read: a new file there is read from then on, and
while there is none every call is StoreUnavailable (503, not ready).
"""

import contextlib
import datetime
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from typing import Optional

from token_exchange.store.base import (
    ACTIVE,
    DEFAULT_INTEGRATION_NS,
    DEFAULT_PLATFORM_NS,
    AlreadyExists,
    AutojoinKeyInfo,
    IntegrationInfo,
    IntegrationKeyInfo,
    IntegrationKeyRecord,
    KeyStore,
    NotFound,
    OrganizationInfo,
    StoreError,
    StoreUnavailable,
    fingerprint_of,
    pick_by_fingerprint,
)
from token_exchange.verification.secrethash import hash_scheme, sha256_hex

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 5.0
SCHEMA_RETRY_SECONDS = 0.02

SCHEMA = """
CREATE TABLE IF NOT EXISTS integrations (
    namespace       TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    PRIMARY KEY (namespace, integration_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS integration_keys (
    namespace       TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    tier            INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (namespace, integration_id, key_id),
    FOREIGN KEY (namespace, integration_id) REFERENCES integrations (namespace, integration_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS organizations (
    namespace               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    email                   TEXT NOT NULL DEFAULT '',
    created_at              TEXT NOT NULL,
    probability_multiplier  REAL NOT NULL DEFAULT 1.0,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS autojoin_keys (
    namespace   TEXT NOT NULL,
    key_sha256  TEXT NOT NULL,
    org_name    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (namespace, key_sha256),
    FOREIGN KEY (namespace, org_name) REFERENCES organizations (namespace, name)
) WITHOUT ROWID;
"""


def _describe(error):
    """SQLite's message, with its error code's name where Python gives it (3.11+): "disk I/O error"
    alone does not say whether a read or a write failed."""
    name = getattr(error, "sqlite_errorname", None)
    return f"{error} ({name})" if name else str(error)


def _create_if_missing(path):
    """Create the database file with mode 0600, whatever the umask, unless it exists.

    It holds key hashes: SQLite would create it 0644 less the umask, and gives the -wal and -shm
    files it creates the database file's mode. An existing file keeps the mode it has.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits from the mode given to open
    finally:
        os.close(fd)


def _open_problem(abspath, error):
    """What stopped opening the file: its directory, which is never created, named when it is missing."""
    directory = os.path.dirname(abspath)
    if isinstance(error, (FileNotFoundError, NotADirectoryError)) and not os.path.isdir(directory):
        if os.path.exists(directory):
            return f"{directory} is not a directory"
        return f"directory {directory} does not exist"
    return f"cannot open: {error.strerror}"


# SQLite keeps any value in any column of a table that is not STRICT, and anything may have written the file:
# a value of the wrong type reads as the Datastore store reads one (store/datastore.py), a key that cannot
# be used (401), never an error in the service or a tool.
def _text(value):
    return value if isinstance(value, str) else ""


def _whole(value):
    return value if isinstance(value, int) else 0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


class SQLiteKeyStore(KeyStore):
    def __init__(self, path, integration_ns=DEFAULT_INTEGRATION_NS, platform_ns=DEFAULT_PLATFORM_NS):
        self.path = path
        self.integration_ns = integration_ns
        self.platform_ns = platform_ns
        self._abspath = os.path.abspath(path)
        # mode=rw: connections open the file at the path but never create one, so a deleted file is
        # not silently replaced by an empty database.
        self._uri = "file://" + urllib.parse.quote(os.fsencode(self._abspath)) + "?mode=rw"
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []  # connections to the current file, not in use
        self._file: Optional[tuple[int, int]] = None  # (st_dev, st_ino) of the file read; None: none there
        self._generation = 0  # counts changes of file: a connection from before one is closed, not reused
        self._closed = False
        try:
            _create_if_missing(path)
            self._file = self._stat()
            self._create_schema_in_turn()
        except OSError as e:
            raise StoreError(f"store sqlite:{path}: {_open_problem(self._abspath, e)}") from None
        except sqlite3.Error as e:
            self.close()
            raise StoreError(f"store sqlite:{path}: cannot open: {_describe(e)}") from None

    def _stat(self):
        """(st_dev, st_ino) of the file at the path, or None when there is none."""
        try:
            st = os.stat(self._abspath)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _follow_file(self):
        """Make sure connections read the file now at the path; StoreUnavailable when there is none.

        Checked on every call: a stat costs about 2 us, beside the SQLite lookup (a few us) and the
        hand-off to a store thread every call pays anyway, and the service reaches the store only on a
        record-cache miss. Checking once per interval instead would save little and serve a deleted
        file meanwhile.
        """
        try:
            if self._stat() != self._file:
                self._switch_file()
        except OSError as e:
            raise StoreUnavailable(f"sqlite:{self.path}: {e.strerror}") from None
        if self._file is None:
            raise StoreUnavailable(f"sqlite:{self.path}: no database file at this path")

    def _switch_file(self):
        """Drop the connections to the previous file; say once what happened."""
        with self._lock:
            # Looked at again under the lock: another thread may have switched since this one looked.
            current, previous = self._stat(), self._file
            if current == previous:
                return
            self._file = current
            self._generation += 1
            stale, self._idle = self._idle, []
            # Logged under the lock, so that the lines of changes close together come in their order.
            if current is None:
                log.error(
                    "key store sqlite:%s: the database file was deleted or moved away; answering 503 until one"
                    " is at this path again",
                    self.path,
                )
            elif previous is None:
                log.warning("key store sqlite:%s: a database file is at this path again; reading it", self.path)
            else:
                log.error(
                    "key store sqlite:%s: the database file was replaced by another; reading the new one", self.path
                )
        for conn in stale:  # those in use are closed when they come back
            conn.close()

    @contextlib.contextmanager
    def _connection(self):
        """A connection to the file at the path, used by this thread alone until the block ends."""
        self._follow_file()
        with self._lock:
            generation = self._generation
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._lock:
                keep = generation == self._generation and not self._closed and not conn.in_transaction
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _connect(self):
        # Autocommit mode: reads need no transaction, writes open one explicitly.
        conn = sqlite3.connect(
            self._uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema_in_turn(self):
        """_create_schema, waiting up to the busy timeout while another opener holds the file.

        Switching a new file to WAL answers "database is locked" at once, without the busy
        handler, when several processes (workers of one service, a tool) open it together.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            with self._connection() as conn:
                try:
                    return self._create_schema(conn)
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            time.sleep(SCHEMA_RETRY_SECONDS)

    @staticmethod
    def _create_schema(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this program knows")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.DatabaseError("cannot switch to WAL mode")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")

    def _read(self, sql, params):
        try:
            with self._connection() as conn:
                return conn.execute(sql, params).fetchone()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"sqlite read failed: {_describe(e)}") from None

    def _read_all(self, sql, params):
        try:
            with self._connection() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"sqlite read failed: {_describe(e)}") from None

    def _write(self, statements):
        """Run (sql, params) pairs in one immediate transaction."""
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    results = [conn.execute(sql, params).rowcount for sql, params in statements]
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite ends the transaction itself on some failures (a full disk, an I/O error): a
                    # ROLLBACK then fails too, and its error must not replace the one that matters.
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
        except sqlite3.IntegrityError as e:
            raise AlreadyExists(str(e)) from None
        except sqlite3.Error as e:
            raise StoreUnavailable(f"sqlite write failed: {_describe(e)}") from None
        return results

    def get_integration_key(self, integration_id, key_id):
        row = self._read(
            "SELECT key_hash, status, tier FROM integration_keys"
            " WHERE namespace = ? AND integration_id = ? AND key_id = ?",
            (self.integration_ns, integration_id, key_id),
        )
        if row is None:
            return None
        key_hash, status, tier = row
        return IntegrationKeyRecord(integration_id, key_id, _text(key_hash), _text(status), _whole(tier))

    def find_autojoin_org(self, api_key):
        row = self._read(
            "SELECT org_name FROM autojoin_keys WHERE namespace = ? AND key_sha256 = ?",
            (self.platform_ns, sha256_hex(api_key.encode("utf-8"))),
        )
        if not row:
            return None
        return _text(row[0]) or None  # an org is a non-empty name

    def ensure_integration(self, integration_id, description=""):
        (created,) = self._write(
            [
                (
                    "INSERT OR IGNORE INTO integrations (namespace, integration_id, description, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (self.integration_ns, integration_id, description, _now()),
                )
            ]
        )
        return created == 1

    def add_integration_key(self, integration_id, key_id, key_hash, description="", tier=0):
        if (
            self._read(
                "SELECT 1 FROM integrations WHERE namespace = ? AND integration_id = ?",
                (self.integration_ns, integration_id),
            )
            is None
        ):
            raise NotFound(f"integration {integration_id!r} does not exist")
        try:
            self._write(
                [
                    (
                        "INSERT INTO integration_keys (namespace, integration_id, key_id, key_hash, description,"
                        " status, tier, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (self.integration_ns, integration_id, key_id, key_hash, description, ACTIVE, tier, _now()),
                    )
                ]
            )
        except AlreadyExists:
            raise AlreadyExists(f"key {key_id!r} already exists in integration {integration_id!r}") from None

    def ensure_organization(self, name, email=""):
        (created,) = self._write(
            [
                (
                    "INSERT OR IGNORE INTO organizations (namespace, name, email, created_at, probability_multiplier)"
                    " VALUES (?, ?, ?, ?, 1.0)",
                    (self.platform_ns, name, email, _now()),
                )
            ]
        )
        return created == 1

    def add_autojoin_key(self, org, api_key):
        if self._read("SELECT 1 FROM organizations WHERE namespace = ? AND name = ?", (self.platform_ns, org)) is None:
            raise NotFound(f"organization {org!r} does not exist")
        self._write(
            [
                (
                    "INSERT INTO autojoin_keys (namespace, key_sha256, org_name, created_at) VALUES (?, ?, ?, ?)",
                    (self.platform_ns, sha256_hex(api_key.encode("utf-8")), org, _now()),
                )
            ]
        )

    def list_integrations(self, integration_id=None):
        only = " AND integration_id = ?" if integration_id is not None else ""
        params = (self.integration_ns,) + ((integration_id,) if integration_id is not None else ())
        keys: dict[str, list[IntegrationKeyInfo]] = {}
        for row in self._read_all(
            "SELECT integration_id, key_id, description, tier, status, created_at, key_hash"
            f" FROM integration_keys WHERE namespace = ?{only} ORDER BY integration_id, key_id",
            params,
        ):
            owner, key_id, description, tier, status, created_at, key_hash = row
            keys.setdefault(owner, []).append(
                IntegrationKeyInfo(
                    _text(key_id),
                    _text(description),
                    _whole(tier),
                    _text(status),
                    _text(created_at),
                    hash_scheme(_text(key_hash)) or "unknown",
                )
            )
        return [
            IntegrationInfo(_text(owner), _text(description), _text(created_at), tuple(keys.get(owner, ())))
            for owner, description, created_at in self._read_all(
                "SELECT integration_id, description, created_at FROM integrations"
                f" WHERE namespace = ?{only} ORDER BY integration_id",
                params,
            )
        ]

    def update_integration_key(self, integration_id, key_id, status=None, tier=None):
        changes = [(column, value) for column, value in (("status", status), ("tier", tier)) if value is not None]
        if not changes:
            raise ValueError("nothing to change")
        assignments = ", ".join(f"{column} = ?" for column, _ in changes)
        (updated,) = self._write(
            [
                (
                    f"UPDATE integration_keys SET {assignments}"
                    " WHERE namespace = ? AND integration_id = ? AND key_id = ?",
                    tuple(value for _, value in changes) + (self.integration_ns, integration_id, key_id),
                )
            ]
        )
        if updated != 1:
            raise NotFound(f"no key {key_id!r} in integration {integration_id!r}")

    def list_organizations(self, org=None):
        params = (self.platform_ns,) + ((org,) if org is not None else ())
        keys: dict[str, list[AutojoinKeyInfo]] = {}
        for owner, key_sha256, created_at in self._read_all(
            "SELECT org_name, key_sha256, created_at FROM autojoin_keys WHERE namespace = ?"
            + (" AND org_name = ?" if org is not None else "")
            + " ORDER BY org_name, created_at, key_sha256",
            params,
        ):
            keys.setdefault(owner, []).append(AutojoinKeyInfo(fingerprint_of(_text(key_sha256)), _text(created_at)))
        return [
            OrganizationInfo(_text(name), _text(email), _text(created_at), tuple(keys.get(name, ())))
            for name, email, created_at in self._read_all(
                "SELECT name, email, created_at FROM organizations WHERE namespace = ?"
                + (" AND name = ?" if org is not None else "")
                + " ORDER BY name",
                params,
            )
        ]

    def delete_autojoin_key(self, fingerprint_prefix, org=None):
        only = " AND org_name = ?" if org is not None else ""
        rows = self._read_all(
            f"SELECT key_sha256, org_name FROM autojoin_keys WHERE namespace = ?{only}",
            (self.platform_ns,) + ((org,) if org is not None else ()),
        )
        key_sha256, owner = pick_by_fingerprint(fingerprint_prefix, [(row[0], row) for row in rows])
        (deleted,) = self._write(
            [("DELETE FROM autojoin_keys WHERE namespace = ? AND key_sha256 = ?", (self.platform_ns, key_sha256))]
        )
        if deleted != 1:
            raise NotFound(f"no autojoin key has fingerprint {fingerprint_prefix}")
        return owner, fingerprint_of(key_sha256)

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:  # those in use are closed when they come back
            conn.close()
