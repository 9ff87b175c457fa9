"""The tools on Datastore, as built zipapps: they write the entities the Go service reads, and the built
service reads through the bundled Datastore client."""

import datetime
import hashlib
import json

from tests.consumer import verify_token
from tests.datastore_seed import INTEGRATION_NS, PLATFORM_NS, PROJECT, entity, seed_integration_key, unique
from tests.httpclient import exchange
from tests.support import TEST_BCRYPT_COST
from tests.zipapp_service import free_port, json_lines, run_zipapp


def test_create_integration_writes_go_entities(client, built_zipapps, zipapp_home, target, ds_service):
    integration_id = unique("acme")
    completed = run_zipapp(
        built_zipapps["create-integration"],
        [
            "-project",
            PROJECT,
            "-integration-id",
            integration_id,
            "-integration-description",
            "Acme Inc",
            "-key-description",
            "production",
            "-key-tier",
            "3",
            "-bcrypt-cost",
            str(TEST_BCRYPT_COST),
        ],
        zipapp_home,
        env={"DATASTORE_EMULATOR_HOST": target.address},
    )
    assert completed.returncode == 0, completed.stderr
    api_key = completed.stdout.split("API Key:", 1)[1].split()[0]
    key_id = completed.stdout.split("Key ID:", 1)[1].split()[0]

    meta = entity(client, "IntegrationMeta", integration_id, namespace=INTEGRATION_NS)
    assert dict(meta) == {"created_at": meta["created_at"], "description": "Acme Inc"}
    assert isinstance(meta["created_at"], datetime.datetime)
    stored = entity(client, "IntegrationMeta", integration_id, "IntegrationAPIKey", key_id, namespace=INTEGRATION_NS)
    assert stored.key.parent == meta.key
    assert set(stored) == {"key_hash", "created_at", "description", "status", "tier"}
    assert stored["status"] == "active" and stored["description"] == "production"
    assert type(stored["tier"]) is int and stored["tier"] == 3
    assert isinstance(stored["created_at"], datetime.datetime)
    assert stored["key_hash"].startswith(f"$2b$0{TEST_BCRYPT_COST}$")
    assert api_key.rsplit(".", 1)[1] not in str(dict(stored))
    if target.server:
        kinds = {
            (prop, kind)
            for prop, (kind, _) in target.server.get_properties(
                ("IntegrationMeta", integration_id, "IntegrationAPIKey", key_id), namespace=INTEGRATION_NS
            ).items()
        }
        assert kinds == {
            ("key_hash", "string_value"),
            ("created_at", "timestamp_value"),
            ("description", "string_value"),
            ("status", "string_value"),
            ("tier", "integer_value"),
        }

    service = ds_service()
    claims = verify_token(
        service.base_url, exchange(service.base_url, "integration", api_key).json()["token"], "integration"
    )
    assert (claims["int_id"], claims["key_id"], claims["tier"]) == (integration_id, key_id, 3)


def test_create_integration_sha256_is_what_the_go_service_reads(client, built_zipapps, zipapp_home, target):
    integration_id = unique("acme")
    completed = run_zipapp(
        built_zipapps["create-integration"],
        [
            "-project",
            PROJECT,
            "-integration-id",
            integration_id,
            "-hash",
            "sha256",
            "-key-id",
            "ki_fixed",
        ],
        zipapp_home,
        env={"DATASTORE_EMULATOR_HOST": target.address},
    )
    assert completed.returncode == 0, completed.stderr
    secret = completed.stdout.split("API Key:", 1)[1].split()[0].rsplit(".", 1)[1]
    stored = entity(
        client, "IntegrationMeta", integration_id, "IntegrationAPIKey", "ki_fixed", namespace=INTEGRATION_NS
    )
    # Exactly the Go service's check: lowercase hex SHA-256 of the secret.
    assert stored["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()

    again = run_zipapp(
        built_zipapps["create-integration"],
        [
            "-project",
            PROJECT,
            "-integration-id",
            integration_id,
            "-key-id",
            "ki_fixed",
        ],
        zipapp_home,
        env={"DATASTORE_EMULATOR_HOST": target.address},
    )
    assert again.returncode != 0 and "already exists" in again.stderr
    assert (
        entity(client, "IntegrationMeta", integration_id, "IntegrationAPIKey", "ki_fixed", namespace=INTEGRATION_NS)[
            "key_hash"
        ]
        == stored["key_hash"]
    )


def test_create_autojoin_key_writes_go_entities(client, built_zipapps, zipapp_home, target, ds_service):
    org = unique("example-org")
    completed = run_zipapp(
        built_zipapps["create-autojoin-key"],
        [
            "-project",
            PROJECT,
            "-org",
            org,
            "-email",
            "ops@example.org",
        ],
        zipapp_home,
        env={"DATASTORE_EMULATOR_HOST": target.address},
    )
    assert completed.returncode == 0, completed.stderr
    value = completed.stdout.split("API Key:", 1)[1].split()[0]

    organization = entity(client, "Organization", org, namespace=PLATFORM_NS)
    assert set(organization) == {"name", "email", "created_at", "probability_multiplier"}
    assert (organization["name"], organization["email"]) == (org, "ops@example.org")
    assert type(organization["probability_multiplier"]) is float
    stored = entity(client, "Organization", org, "APIKey", value, namespace=PLATFORM_NS)
    assert stored.key.parent == organization.key
    assert dict(stored) == {"created_at": stored["created_at"], "key": value}
    assert isinstance(stored["created_at"], datetime.datetime)

    service = ds_service()
    response = exchange(service.base_url, "autojoin", value)
    assert verify_token(service.base_url, response.json()["token"], "autojoin")["org"] == org


def test_tools_need_a_project_with_datastore(built_zipapps, zipapp_home, target):
    for tool, args in (("create-integration", ["-integration-id", "x"]), ("create-autojoin-key", ["-org", "x"])):
        completed = run_zipapp(built_zipapps[tool], args, zipapp_home, env={"DATASTORE_EMULATOR_HOST": target.address})
        assert completed.returncode == 2
        assert "-project is required" in completed.stderr


def test_project_id_serves_the_service_and_the_tools(client, built_zipapps, zipapp_home, target):
    """PROJECT_ID, exported for the service, names the project for every tool that takes one."""
    env = {"DATASTORE_EMULATOR_HOST": target.address, "PROJECT_ID": PROJECT}
    integration_id, org = unique("acme"), unique("example-org")

    def run(tool, *args):
        completed = run_zipapp(built_zipapps[tool], args, zipapp_home, env=env)
        assert completed.returncode == 0, completed.stderr
        assert f"From the environment: PROJECT_ID={PROJECT}\n" in completed.stderr
        return completed

    run("create-integration", "-integration-id", integration_id, "-bcrypt-cost", str(TEST_BCRYPT_COST))
    run("create-autojoin-key", "-org", org)
    assert entity(client, "IntegrationMeta", integration_id, namespace=INTEGRATION_NS) is not None
    assert entity(client, "Organization", org, namespace=PLATFORM_NS) is not None
    listed = run("integration-keys", "list", "-integration-id", integration_id, "-json")
    assert [i["integration_id"] for i in json.loads(listed.stdout)["integrations"]] == [integration_id]
    listed = run("autojoin-keys", "list", "-org", org, "-json")
    assert [o["name"] for o in json.loads(listed.stdout)["organizations"]] == [org]


def test_create_integration_takes_the_go_tools_project_variable(client, built_zipapps, zipapp_home, target):
    """PROJECT, as the Go create-integration reads it; the other tools leave it alone."""
    integration_id = unique("acme")
    env = {"DATASTORE_EMULATOR_HOST": target.address, "PROJECT": PROJECT}
    args = ["-integration-id", integration_id, "-bcrypt-cost", str(TEST_BCRYPT_COST)]
    completed = run_zipapp(built_zipapps["create-integration"], args, zipapp_home, env=env)
    assert completed.returncode == 0, completed.stderr
    assert entity(client, "IntegrationMeta", integration_id, namespace=INTEGRATION_NS) is not None
    for tool in ("integration-keys", "autojoin-keys"):
        completed = run_zipapp(built_zipapps[tool], ["list"], zipapp_home, env=env)
        assert completed.returncode == 2
        assert "-project is required" in completed.stderr


def test_built_service_serves_from_datastore(client, zipapp_services, key_file, target):
    """The zipapp bundles the Datastore client and reads through it."""
    api_key, _ = seed_integration_key(client, unique("acme"))
    port = free_port()
    service = zipapp_services.launch(
        ["-project-id", PROJECT, "-private-key-path", key_file("EdDSA"), "-port", port],
        port,
        env={"DATASTORE_EMULATOR_HOST": target.address},
    ).wait_healthy()
    response = exchange(service.base_url, "integration", api_key)
    assert response.status == 200, service.output()
    verify_token(service.base_url, response.json()["token"], "integration")
    store_lines = [line["message"] for line in json_lines(service.output()) if line["message"].startswith("key store")]
    assert store_lines == [
        f"key store datastore (project {PROJECT}, integration namespace {INTEGRATION_NS},"
        f" platform namespace {PLATFORM_NS}, timeout 3 s)"
    ]
