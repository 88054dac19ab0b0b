"""integration.sync_files: files in, changes applied, checkpoints, relisting, project routing."""

import factories
import pytest
from pymongo.database import Database

from ops.fake_providers.control import FakeProviders
from tasks import sync
from tasks.integrations import open_connection
from tasks.providers import ProviderRequestError
from worker.base import Services

pytestmark = pytest.mark.usefixtures("worker")


def provider_set(fake: FakeProviders, account_id: str) -> dict[str, str]:
    """provider file id -> path, as the fake holds them now (root excluded)."""
    return {f["id"]: f["path"] for f in fake.files(account_id, limit=10_000)}


def stored_set(db: Database, integration: dict) -> dict[str, str]:
    return {
        d["providerFileId"]: d["path"]
        for d in db["virtualFiles"].find({"integrationId": integration["_id"], "deletedAt": None})
    }


def by_path(db: Database, integration: dict) -> dict[str, dict]:
    return {
        d["path"]: d
        for d in db["virtualFiles"].find({"integrationId": integration["_id"], "deletedAt": None})
    }


def test_dropbox_sync_applies_adds_renames_moves_deletions_and_projects(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account(
        "dropbox", files=["/Team/a.txt", "/Team/sub/b.txt", "/Other/c.txt", "/Other/keep.txt"], page_size=2
    )
    team = factories.project(db, tenant_id)
    integration = factories.integration_for(db, ring, tenant_id, account)
    db["projects"].update_one(
        {"_id": team["_id"]},
        {"$set": {"integrations": [{"integrationId": integration["_id"], "folderPath": "/Team"}]}},
    )

    first = factories.run_integration_job(services, "integration.sync_files", integration)
    assert first["status"] == "succeeded", first["error"]
    assert first["result"]["pages"] >= 3  # paged by the provider, written page by page
    assert stored_set(db, integration) == provider_set(fake, account.id)
    files = by_path(db, integration)
    assert files["/Team/sub/b.txt"]["projectId"] == team["_id"]
    assert files["/Other/c.txt"]["projectId"] is None  # kept even though no project holds it
    assert files["/Team/a.txt"]["syncStatus"]["status"] == "synced"
    project = db["projects"].find_one({"_id": team["_id"]})
    assert project["metadata"]["fileCount"] == 2
    assert project["metadata"]["lastSync"] is not None
    untouched_at = files["/Other/keep.txt"]["updatedAt"]

    ids = {f["path"]: f["id"] for f in fake.files(account.id)}
    fake.rename(account.id, ids["/Team/a.txt"], "renamed.txt")
    fake.move(account.id, ids["/Team/sub/b.txt"], ids["/Other"])
    fake.delete_file(account.id, ids["/Other/c.txt"])
    fake.add_file(account.id, "/Team/new.txt", size=10)

    second = factories.run_integration_job(services, "integration.sync_files", integration)
    assert second["status"] == "succeeded", second["error"]
    assert stored_set(db, integration) == provider_set(fake, account.id)
    files = by_path(db, integration)
    assert set(files) >= {"/Team/renamed.txt", "/Other/b.txt", "/Team/new.txt", "/Other/keep.txt"}
    assert files["/Other/b.txt"]["projectId"] is None  # moved out of the project's folder
    assert files["/Other/keep.txt"]["updatedAt"] == untouched_at  # unchanged files are not rewritten
    gone = db["virtualFiles"].find_one(
        {"integrationId": integration["_id"], "providerFileId": ids["/Other/c.txt"]}
    )
    assert gone["deletedAt"] is not None
    assert gone["syncStatus"]["status"] == "deleted"
    assert db["projects"].find_one({"_id": team["_id"]})["metadata"]["fileCount"] == 2  # renamed + new
    assert db["virtualFiles"].count_documents({"integrationId": integration["_id"]}) == len(
        {d["providerFileId"] for d in db["virtualFiles"].find({"integrationId": integration["_id"]})}
    )


@pytest.mark.parametrize("slug", ["google-drive", "onedrive", "dropbox"])
def test_void_cursor_relists_and_removes_what_is_gone(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str, slug: str
) -> None:
    account = fake.create_account(slug, files=["/x/one.txt", "/x/two.txt", "/three.txt"], page_size=2)
    integration = factories.integration_for(db, ring, tenant_id, account)
    assert (
        factories.run_integration_job(services, "integration.sync_files", integration)["status"]
        == "succeeded"
    )
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()

    ids = {f["path"]: f["id"] for f in fake.files(account.id)}
    fake.reset_cursors(account.id)
    fake.delete_file(account.id, ids["/three.txt"])
    job = factories.run_integration_job(services, "integration.sync_files", integration)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["relisting"] is True
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert ids["/three.txt"] not in stored_set(db, integration)


def test_a_run_interrupted_between_pages_resumes_from_its_checkpoint(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("dropbox", files=[f"/f{n}.txt" for n in range(7)], page_size=2)
    integration = factories.integration_for(db, ring, tenant_id, account)
    fake.fault(account.id, "status", status=400, count=None, endpoint="dropbox.list_folder_continue")
    with pytest.raises(ProviderRequestError):
        sync.sync(services, tenant_id, integration["_id"], job_id="run-1", full=False)
    assert len(stored_set(db, integration)) == 2  # the first page landed
    assert db["cloudIntegrations"].find_one({"_id": integration["_id"]})["metadata"]["syncCursor"]

    fake.clear_faults(account.id)
    outcome = sync.sync(services, tenant_id, integration["_id"], job_id="run-2", full=False)
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert outcome.written == len(provider_set(fake, account.id)) - 2  # nothing written twice
    assert db["virtualFiles"].count_documents({"integrationId": integration["_id"]}) == 7


def test_a_run_over_its_budget_stops_at_a_checkpoint(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("onedrive", files=[f"/f{n}.txt" for n in range(5)], page_size=2)
    integration = factories.integration_for(db, ring, tenant_id, account)
    conn = open_connection(services, tenant_id, integration["_id"])
    outcome = sync.Syncer(conn, job_id="budget-1", full=False, budget=0).run()
    assert outcome.continued is True
    assert outcome.pages == 1
    conn = open_connection(services, tenant_id, integration["_id"])
    rest = sync.Syncer(conn, job_id="budget-2", full=False, budget=60).run()
    assert rest.continued is False
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()


def test_project_router_prefers_the_closest_folder() -> None:
    router = sync.ProjectRouter(
        [
            {"_id": "all", "integrations": [{"integrationId": "i", "folderPath": "/"}]},
            {"_id": "team", "integrations": [{"integrationId": "i", "folderPath": "/Team"}]},
            {"_id": "other", "integrations": [{"integrationId": "j", "folderPath": "/Team/Deep"}]},
        ],
        "i",
    )
    assert router.route("/Team/Deep/x") == "team"
    assert router.route("/team/x") == "team"
    assert router.route("/Teammate/x") == "all"
    assert router.project_ids == ["all", "team"]
