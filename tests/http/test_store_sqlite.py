"""The SQLite store under a running service: a tool writing the file while the service serves from it,
the file deleted or replaced under it."""

import concurrent.futures
import logging
import time

from tests.httpclient import exchange, request
from tests.support import TEST_BCRYPT_COST, remove_database
from token_exchange.store.sqlite import SQLiteKeyStore
from token_exchange.tools.provisioning import create_integration_key


def test_tool_writes_while_service_serves(service, db_path):
    """Several writers (as tools would be) and the service on one file at once."""

    def create(n):
        writer = SQLiteKeyStore(str(db_path))
        try:
            return create_integration_key(writer, f"int-{n % 3}", bcrypt_cost=TEST_BCRYPT_COST)
        finally:
            writer.close()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        created = list(pool.map(create, range(12)))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda k: exchange(service.base_url, "integration", k.api_key).status, created))
    assert statuses == [200] * 12


UNAVAILABLE = (503, b"Key store unavailable, retry later\n")
STORE_LOGGER = "token_exchange.store.sqlite"


def answer(response):
    return response.status, response.body


def write_new_database(db_path, integration_id="acme"):
    """What create-integration does to a path without a database: a new file holding one new key."""
    tool = SQLiteKeyStore(str(db_path))
    try:
        return create_integration_key(tool, integration_id, bcrypt_cost=TEST_BCRYPT_COST)
    finally:
        tool.close()


def store_lines(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == STORE_LOGGER]


def test_a_deleted_database_is_not_served_and_its_return_is(service, db_path, caplog):
    caplog.set_level(logging.INFO)
    old = write_new_database(db_path)
    assert exchange(service.base_url, "integration", old.api_key).status == 200

    remove_database(db_path)
    for _ in range(3):
        assert answer(request(service.base_url, "GET", "/ready")) == UNAVAILABLE
        assert answer(exchange(service.base_url, "integration", old.api_key)) == UNAVAILABLE
    assert not db_path.exists()  # no empty database made in its place
    ((level, message),) = store_lines(caplog)  # one line, not one per request
    assert level == logging.ERROR
    assert str(db_path) in message and "deleted" in message

    new = write_new_database(db_path)
    assert exchange(service.base_url, "integration", new.api_key).status == 200
    assert answer(exchange(service.base_url, "integration", old.api_key)) == (401, b"Invalid API key\n")
    assert request(service.base_url, "GET", "/ready").status == 200
    assert len(store_lines(caplog)) == 2


def test_a_database_replaced_by_a_tool_is_served(service, db_path, caplog):
    caplog.set_level(logging.INFO)
    old = write_new_database(db_path)
    assert exchange(service.base_url, "integration", old.api_key).status == 200

    remove_database(db_path)
    new = write_new_database(db_path)  # before the service has read the path again
    assert exchange(service.base_url, "integration", new.api_key).status == 200
    assert answer(exchange(service.base_url, "integration", old.api_key)) == (401, b"Invalid API key\n")
    assert request(service.base_url, "GET", "/ready").status == 200
    ((level, message),) = store_lines(caplog)
    assert level == logging.ERROR
    assert str(db_path) in message and "replaced" in message


def test_a_replaced_database_is_served_once_cached_records_expire(start_service, db_path):
    old = write_new_database(db_path)
    service = start_service(key_cache_ttl=0.5)
    assert exchange(service.base_url, "integration", old.api_key).status == 200

    remove_database(db_path)
    new = write_new_database(db_path)
    assert exchange(service.base_url, "integration", new.api_key).status == 200  # a key id not cached
    # The old key's record may be reused for up to the TTL; after it, the old key is refused.
    deadline = time.monotonic() + 30
    while exchange(service.base_url, "integration", old.api_key).status == 200:
        assert time.monotonic() < deadline, "the old key is still accepted"
        time.sleep(0.05)
    assert answer(exchange(service.base_url, "integration", old.api_key)) == (401, b"Invalid API key\n")
