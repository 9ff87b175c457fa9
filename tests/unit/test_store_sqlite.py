"""The embedded SQLite store: no plaintext at rest, WAL, shared by service and tools."""

import logging
import os
import pathlib
import sqlite3
import stat
import threading

import pytest

from tests.support import TEST_BCRYPT_COST, remove_database
from token_exchange.store import AlreadyExists, NotFound, StoreError, StoreUnavailable, open_store
from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.tools.provisioning import create_autojoin_key, create_integration_key
from token_exchange.verification.secrethash import sha256_hex


def file_bytes(db_path):
    data = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def test_no_plaintext_secret_is_stored(store, db_path, integration_key, autojoin_key):
    integration = integration_key()
    autojoin = autojoin_key()
    secret = integration.api_key.rsplit(".", 1)[1].encode()

    stored = file_bytes(db_path)
    assert secret not in stored
    assert integration.api_key.encode() not in stored
    assert autojoin.api_key.encode() not in stored
    # What is stored is the bcrypt hash and the autojoin key's SHA-256.
    with sqlite3.connect(db_path) as conn:
        (key_hash,) = conn.execute("SELECT key_hash FROM integration_keys").fetchone()
        (autojoin_hash,) = conn.execute("SELECT key_sha256 FROM autojoin_keys").fetchone()
    assert key_hash.startswith(f"$2b$0{TEST_BCRYPT_COST}$")
    assert autojoin_hash == sha256_hex(autojoin.api_key.encode())


def test_records_read_back(store, integration_key, autojoin_key):
    integration = integration_key("acme", tier=3, key_description="prod")
    record = store.get_integration_key("acme", integration.key_id)
    assert (record.integration_id, record.key_id, record.status, record.tier) == (
        "acme",
        integration.key_id,
        "active",
        3,
    )
    assert "$2b$" not in repr(record)
    assert store.get_integration_key("acme", "ki_missing") is None
    assert store.find_autojoin_org(autojoin_key("org-a").api_key) == "org-a"
    assert store.find_autojoin_org("unknown") is None


@pytest.mark.parametrize(
    "column,value",
    [("tier", "abc"), ("tier", 1.5), ("tier", 1e30), ("key_hash", b"\x00\x01"), ("status", b"active")],
)
def test_a_value_of_the_wrong_type_reads_as_an_unusable_key(store, db_path, integration_key, column, value):
    # SQLite keeps any value in any column: one written by another program must not fail the reader.
    integration = integration_key("acme", tier=2)
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"UPDATE integration_keys SET {column} = ?", (value,))
    record = store.get_integration_key("acme", integration.key_id)
    read = {"tier": record.tier, "key_hash": record.key_hash, "status": record.status}
    assert read[column] == (0 if column == "tier" else "")  # as the Datastore store reads a wrong type
    assert record.tier == (0 if column == "tier" else 2)
    [listed] = store.list_integrations("acme")  # the tools list it too
    assert listed.keys[0].tier == record.tier


def test_an_org_name_of_the_wrong_type_is_no_org(store, db_path, autojoin_key):
    autojoin = autojoin_key("org-a")
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE autojoin_keys SET org_name = ?", (b"\xff\xfe",))
    assert store.find_autojoin_org(autojoin.api_key) is None


def test_wal_mode_and_schema_version(store, db_path):
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_existing_key_id_is_never_overwritten(store, integration_key):
    first = integration_key("acme", key_id="ki_fixed")
    with pytest.raises(AlreadyExists, match="ki_fixed"):
        integration_key("acme", key_id="ki_fixed")
    assert store.get_integration_key("acme", "ki_fixed").key_hash  # the first one is intact
    assert first.key_id == "ki_fixed"


def test_second_key_keeps_the_integration(store, integration_key):
    first = integration_key("acme", integration_description="Acme Inc")
    second = integration_key("acme", integration_description="ignored")
    assert first.integration_created and not second.integration_created
    assert store.get_integration_key("acme", first.key_id) and store.get_integration_key("acme", second.key_id)


def test_keys_need_their_parent(store):
    with pytest.raises(NotFound):
        store.add_integration_key("nobody", "ki_1", "hash")
    with pytest.raises(NotFound):
        store.add_autojoin_key("no-org", "key")


def test_namespaces_are_separate(db_path):
    default = SQLiteKeyStore(str(db_path))
    other = SQLiteKeyStore(str(db_path), integration_ns="ns2", platform_ns="ns2")
    try:
        integration = create_integration_key(default, "acme", bcrypt_cost=TEST_BCRYPT_COST)
        autojoin = create_autojoin_key(other, "org")
        assert other.get_integration_key("acme", integration.key_id) is None
        assert default.find_autojoin_org(autojoin.api_key) is None
        assert other.find_autojoin_org(autojoin.api_key) == "org"
    finally:
        default.close()
        other.close()


def test_unopenable_file_is_a_clear_store_error(tmp_path):
    # The directory is never created, so the error names it.
    missing = tmp_path / "missing-dir"
    with pytest.raises(StoreError) as refused:
        open_store(f"sqlite:{missing}/keys.db")
    assert str(refused.value) == f"store sqlite:{missing}/keys.db: directory {missing} does not exist"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError) as refused:
        open_store(f"sqlite:{tmp_path}/a-file/keys.db")
    assert str(refused.value).endswith(f": {tmp_path}/a-file is not a directory")
    not_a_db = tmp_path / "not.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(f"sqlite:{not_a_db}")


def test_newer_schema_is_refused(db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        SQLiteKeyStore(str(db_path))


def test_read_failure_is_unavailable_not_missing(store, db_path, integration_key):
    key = integration_key()
    store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TABLE integration_keys")
    with pytest.raises(StoreUnavailable):
        store.get_integration_key("acme", key.key_id)


@pytest.mark.parametrize("spec", ["", "sqlite:", "postgres:x", "Datastore"])
def test_invalid_store_spec(spec):
    with pytest.raises(ValueError):
        open_store(spec)


def test_lifecycle_changes_stay_in_their_namespace(db_path):
    stores = [SQLiteKeyStore(str(db_path), integration_ns=ns, platform_ns=ns) for ns in ("one", "two")]
    try:
        keys = [create_integration_key(s, "acme", key_id="ki_same", bcrypt_cost=TEST_BCRYPT_COST) for s in stores]
        autojoin = [create_autojoin_key(s, "example-org").api_key for s in stores]
        stores[0].update_integration_key("acme", keys[0].key_id, status="revoked", tier=3)
        assert [k.status for k in stores[0].list_integrations()[0].keys] == ["revoked"]
        assert [(k.status, k.tier) for k in stores[1].list_integrations("acme")[0].keys] == [("active", 0)]
        assert stores[1].get_integration_key("acme", "ki_same").status == "active"

        # Another namespace's key is not found by its fingerprint, nor is another organisation's.
        with pytest.raises(NotFound):
            stores[0].delete_autojoin_key(sha256_hex(autojoin[1].encode())[:12])
        with pytest.raises(NotFound):
            stores[1].delete_autojoin_key(sha256_hex(autojoin[1].encode())[:12], org="other-org")
        assert stores[1].delete_autojoin_key(sha256_hex(autojoin[1].encode())[:8]) == (
            "example-org",
            sha256_hex(autojoin[1].encode())[:12],
        )
        assert stores[1].find_autojoin_org(autojoin[1]) is None
        assert stores[0].find_autojoin_org(autojoin[0]) == "example-org"
        assert stores[1].list_organizations()[0].keys == ()
        with pytest.raises(NotFound):
            stores[1].update_integration_key("acme", "ki_other", status="revoked")
    finally:
        for s in stores:
            s.close()


def test_many_openers_of_a_new_file_all_succeed(tmp_path):
    # Workers of one service (and tools) may open a file that does not exist yet at the same moment:
    # each must wait its turn to create the schema, not fail with "database is locked".
    for attempt in range(20):
        path = str(tmp_path / f"new-{attempt}.db")
        barrier = threading.Barrier(6)
        opened, failed = [], []

        def open_store(path=path, barrier=barrier, opened=opened, failed=failed):
            barrier.wait()
            try:
                opened.append(SQLiteKeyStore(path))
            except StoreError as e:
                failed.append(str(e))

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for store in opened:
            assert store.get_integration_key("acme", "ki_x") is None
            store.close()
        assert failed == []


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o377], ids=["000", "022", "077", "377"])
def test_files_it_creates_are_0600_whatever_the_umask(tmp_path, umask):
    db_path = tmp_path / "keys.db"
    old_umask = os.umask(umask)
    try:
        store = SQLiteKeyStore(str(db_path))
        try:
            create_integration_key(store, "acme", bcrypt_cost=TEST_BCRYPT_COST)
            files = [db_path.with_name(db_path.name + suffix) for suffix in ("", "-wal", "-shm")]
            assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        finally:
            store.close()
    finally:
        os.umask(old_umask)


def test_an_existing_files_mode_is_left_alone(db_path):
    db_path.touch(mode=0o640)
    db_path.chmod(0o640)
    store = SQLiteKeyStore(str(db_path))
    try:
        create_integration_key(store, "acme", bcrypt_cost=TEST_BCRYPT_COST)
        assert mode(db_path) == 0o640
    finally:
        store.close()


# The file deleted or replaced under an open store.


def open_files_of_this_process():
    fds = pathlib.Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            found.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return found


def store_messages(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "token_exchange.store.sqlite"]


def test_a_deleted_file_is_unavailable_and_no_longer_held_open(store, db_path, integration_key, caplog):
    key = integration_key()
    assert any(path.startswith(str(db_path)) for path in open_files_of_this_process())
    remove_database(db_path)
    with pytest.raises(StoreUnavailable, match="no database file"):
        store.get_integration_key("acme", key.key_id)
    with pytest.raises(StoreUnavailable, match="no database file"):
        store.check()
    with pytest.raises(StoreUnavailable, match="no database file"):
        store.ensure_integration("globex")  # a tool writes no empty database in its place either
    assert not db_path.exists()
    assert [path for path in open_files_of_this_process() if path.startswith(str(db_path))] == []
    assert [level for level, _ in store_messages(caplog)] == ["ERROR"]


def test_a_replaced_file_is_read_from_then_on(store, db_path, integration_key, caplog):
    old = integration_key()
    remove_database(db_path)
    other = SQLiteKeyStore(str(db_path))
    try:
        new = create_integration_key(other, "acme", bcrypt_cost=TEST_BCRYPT_COST)
    finally:
        other.close()
    assert store.get_integration_key("acme", old.key_id) is None
    assert store.get_integration_key("acme", new.key_id).key_id == new.key_id
    store.check()
    ((level, message),) = store_messages(caplog)
    assert level == "ERROR" and "replaced" in message and str(db_path) in message


def test_threads_reading_while_the_file_is_replaced_see_one_change(store, db_path, integration_key, caplog):
    caplog.set_level(logging.INFO)
    old = integration_key()
    stop = threading.Event()
    failures = []

    def keep_reading():
        while not stop.is_set():
            try:
                store.get_integration_key("acme", old.key_id)
            except StoreUnavailable:
                pass  # while no file, or a file without tables yet, is at the path: a 503, as it should be
            except Exception as e:
                failures.append(repr(e))

    readers = [threading.Thread(target=keep_reading) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        remove_database(db_path)
        other = SQLiteKeyStore(str(db_path))
        try:
            new = create_integration_key(other, "acme", bcrypt_cost=TEST_BCRYPT_COST)
        finally:
            other.close()
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert failures == []
    assert store.get_integration_key("acme", new.key_id).key_id == new.key_id
    assert store.get_integration_key("acme", old.key_id) is None
    # One line for each change the readers saw: the file replaced, or gone and then back.
    assert [level for level, _ in store_messages(caplog)] in (["ERROR"], ["ERROR", "WARNING"])
