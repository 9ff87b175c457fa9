"""The SQLite store under a running service: a tool writing the file while the service serves from it."""

import concurrent.futures

from tests.httpclient import exchange
from tests.support import TEST_BCRYPT_COST
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
