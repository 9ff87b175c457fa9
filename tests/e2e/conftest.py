"""Fixtures of the e2e tier: the built zipapps, services and tools run as processes, and the
Datastore test server (tests/datastore_server.py, or the emulator DATASTORE_EMULATOR_HOST names)."""

import fcntl
import os
import subprocess

import pytest
from google.cloud import datastore

from tests.datastore_seed import PROJECT, STORE_TIMEOUT, Target
from tests.datastore_server import DatastoreTestServer
from tests.support import DIST, ROOT
from tests.zipapp_service import LifecycleTools, Tools, ZipappServices
from token_exchange.store import open_store


@pytest.fixture(scope="session")
def built_zipapps(tmp_path_factory):
    """The zipapps of build.sh (scripts/test.sh builds them first); built here when missing."""
    names = (
        "token-exchange",
        "create-integration",
        "create-autojoin-key",
        "integration-keys",
        "autojoin-keys",
        "generate-jwk",
    )
    paths = {name: DIST / f"{name}.pyz" for name in names}
    if not all(path.exists() for path in paths.values()):
        # Under pytest-xdist every worker gets here: one builds while the others wait on the lock.
        with open(tmp_path_factory.getbasetemp().parent / "build-zipapps.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not all(path.exists() for path in paths.values()):
                subprocess.run(["bash", str(ROOT / "build.sh")], check=True, cwd=ROOT)
    return paths


@pytest.fixture
def service_pyz(built_zipapps):
    return built_zipapps["token-exchange"]


@pytest.fixture(scope="session")
def zipapp_home(tmp_path_factory):
    """HOME of every zipapp run of the test run (shiv unpacks into HOME/.shiv).

    Under pytest-xdist the workers share it, so each zipapp is unpacked once, not once per worker
    (shiv takes a file lock while it unpacks)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        home = tmp_path_factory.getbasetemp().parent / "zipapp-home"  # the run's directory, above each worker's
        home.mkdir(exist_ok=True)
        return home
    return tmp_path_factory.mktemp("zipapp-home")


@pytest.fixture
def zipapp_services(built_zipapps, zipapp_home, key_file, db_path):
    services = ZipappServices(built_zipapps["token-exchange"], zipapp_home, key_file, db_path)
    yield services
    services.stop_all()


@pytest.fixture
def tools(built_zipapps, zipapp_home):
    return Tools(built_zipapps, zipapp_home)


@pytest.fixture
def sqlite_tools(built_zipapps, zipapp_home, db_path):
    return LifecycleTools(built_zipapps, zipapp_home, ["-store", f"sqlite:{db_path}"])


@pytest.fixture
def datastore_tools(built_zipapps, zipapp_home, target):
    return LifecycleTools(
        built_zipapps,
        zipapp_home,
        ["-store", "datastore", "-project", PROJECT],
        env={"DATASTORE_EMULATOR_HOST": target.address},
    )


@pytest.fixture(scope="session")
def datastore_target():
    """One Datastore test server per session (per xdist worker); target resets it for every test."""
    external = os.environ.get("DATASTORE_EMULATOR_HOST")
    if external:
        yield Target(external, None)
        return
    server = DatastoreTestServer(project=PROJECT)
    server.start()
    yield Target(server.address, server)
    server.stop()


@pytest.fixture
def target(datastore_target, monkeypatch):
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", datastore_target.address)
    if datastore_target.server:
        datastore_target.server.reset()
    return datastore_target


@pytest.fixture
def fault_server(target):
    if target.server is None:
        pytest.skip("fault injection needs the test server, not an external emulator")
    yield target.server
    target.server.heal()


@pytest.fixture
def client(target):
    client = datastore.Client(project=PROJECT)
    yield client
    client.close()


@pytest.fixture
def ds_service(start_service, target):
    """The real app on a real socket, on the Datastore store."""

    def start(**namespaces):
        store = open_store("datastore", project=PROJECT, timeout_seconds=STORE_TIMEOUT, **namespaces)
        return start_service(store=store, store_timeout=STORE_TIMEOUT)

    return start
