"""integration.sync_files: files in, changes applied, checkpoints, relisting, project routing."""

from typing import Any

import factories
import pytest
from bson import ObjectId
from pymongo.database import Database

from mwap.services import Services
from ops.fake_providers.control import FakeProviders
from tasks import sync
from tasks.integrations import open_connection
from tasks.providers import ProviderRequestError

pytestmark = pytest.mark.usefixtures("worker")


def under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/").casefold()
    lowered = path.casefold()
    return not folder or lowered == folder or lowered.startswith(folder + "/")


def provider_set(fake: FakeProviders, account_id: str, folder: str = "/") -> dict[str, str]:
    """provider file id -> path, as the fake holds them now (root excluded), inside ``folder``."""
    return {f["id"]: f["path"] for f in fake.files(account_id, limit=10_000) if under(f["path"], folder)}


def provider_file_count(fake: FakeProviders, account_id: str, folder: str) -> int:
    return sum(
        1 for f in fake.files(account_id, limit=10_000) if not f["folder"] and under(f["path"], folder)
    )


def stored_set(db: Database, integration: dict) -> dict[str, str]:
    return {
        d["providerFileId"]: d["path"] for d in db["virtualFiles"].find({"integrationId": integration["_id"]})
    }


def by_path(db: Database, integration: dict) -> dict[str, dict]:
    return {d["path"]: d for d in db["virtualFiles"].find({"integrationId": integration["_id"]})}


def set_link_enabled(db: Database, project_id: ObjectId, integration_id: ObjectId, enabled: bool) -> None:
    result = db["projects"].update_one(
        {"_id": project_id, "integrations.integrationId": integration_id},
        {"$set": {"integrations.$.enabled": enabled}},
    )
    assert result.matched_count == 1


def succeeded(job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "succeeded", job.get("error")
    return job["result"]


def test_dropbox_sync_applies_adds_renames_moves_deletions_and_projects(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account(
        "dropbox",
        files=["/Team/a.txt", "/Team/sub/b.txt", "/Team/c.txt", "/Team/keep.txt", "/Other/o.txt"],
        page_size=2,
    )
    team = factories.project(db, tenant_id, folderPath="/Team")
    integration = factories.integration_for(db, ring, tenant_id, account, project_ids=[team["_id"]])

    first = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert first["pages"] >= 3  # paged by the provider, written page by page
    assert stored_set(db, integration) == provider_set(fake, account.id, "/Team")
    files = by_path(db, integration)
    assert "/Other/o.txt" not in files  # in no linked project's folder: not a virtual file
    assert files["/Team/sub/b.txt"]["projectId"] == team["_id"]
    assert files["/Team/sub/b.txt"]["providerId"] == integration["providerId"]
    assert files["/Team/a.txt"]["syncStatus"]["status"] == "synced"
    assert files["/Team/a.txt"]["type"] == "text/plain"
    assert files["/Team/sub"]["type"] == "inode/directory"
    assert files["/Team/sub"]["mwapTasks"]["isFolder"] is True
    assert {d["projectId"] for d in files.values()} == {team["_id"]}
    project = db["projects"].find_one({"_id": team["_id"]})
    assert project["metadata"]["fileCount"] == 4  # folders excluded
    assert project["metadata"]["fileCount"] == provider_file_count(fake, account.id, "/Team")
    assert project["metadata"]["totalSize"] == sum(d["size"] for d in files.values())
    untouched_at = files["/Team/keep.txt"]["updatedAt"]

    ids = {f["path"]: f["id"] for f in fake.files(account.id)}
    fake.rename(account.id, ids["/Team/a.txt"], "renamed.txt")
    fake.move(account.id, ids["/Team/sub/b.txt"], ids["/Other"])
    fake.move(account.id, ids["/Other/o.txt"], ids["/Team"])
    fake.delete_file(account.id, ids["/Team/c.txt"])
    fake.add_file(account.id, "/Team/new.txt", size=10)

    succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert stored_set(db, integration) == provider_set(fake, account.id, "/Team")
    files = by_path(db, integration)
    assert set(files) >= {"/Team/renamed.txt", "/Team/new.txt", "/Team/keep.txt", "/Team/o.txt"}
    assert "/Other/b.txt" not in files  # moved out of the project's folder: removed
    assert files["/Team/o.txt"]["projectId"] == team["_id"]  # moved in: stored
    assert files["/Team/keep.txt"]["updatedAt"] == untouched_at  # unchanged files are not rewritten
    for gone in ("/Team/c.txt", "/Team/sub/b.txt"):  # deleted and moved out: hard-deleted
        assert db["virtualFiles"].find_one({"providerFileId": ids[gone]}) is None
    # renamed + keep + new + o
    assert db["projects"].find_one({"_id": team["_id"]})["metadata"]["fileCount"] == 4
    assert db["virtualFiles"].count_documents({"integrationId": integration["_id"]}) == len(
        {d["providerFileId"] for d in db["virtualFiles"].find({"integrationId": integration["_id"]})}
    )


@pytest.mark.parametrize("slug", ["google-drive", "onedrive", "dropbox"])
def test_void_cursor_relists_and_removes_what_is_gone(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId, slug: str
) -> None:
    account = fake.create_account(slug, files=["/x/one.txt", "/x/two.txt", "/three.txt"], page_size=2)
    everything = factories.project(db, tenant_id)  # folderPath "/"
    integration = factories.integration_for(db, ring, tenant_id, account, project_ids=[everything["_id"]])
    succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert len(stored_set(db, integration)) == 4  # x/, one, two, three

    ids = {f["path"]: f["id"] for f in fake.files(account.id)}
    fake.reset_cursors(account.id)
    fake.delete_file(account.id, ids["/three.txt"])
    result = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert result["relisting"] is True
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert ids["/three.txt"] not in stored_set(db, integration)
    assert db["virtualFiles"].find_one({"providerFileId": ids["/three.txt"]}) is None


def test_a_run_interrupted_between_pages_resumes_from_its_checkpoint(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account("dropbox", files=[f"/f{n}.txt" for n in range(7)], page_size=2)
    everything = factories.project(db, tenant_id)
    integration = factories.integration_for(db, ring, tenant_id, account, project_ids=[everything["_id"]])
    fake.fault(account.id, "status", status=400, count=None, endpoint="dropbox.list_folder_continue")
    with pytest.raises(ProviderRequestError):
        sync.sync(services, tenant_id, integration["_id"], job_id="run-1", full=False)
    assert len(stored_set(db, integration)) == 2  # the first page landed
    assert db["cloudIntegrations"].find_one({"_id": integration["_id"]})["mwapTasks"]["syncCursor"]

    fake.clear_faults(account.id)
    outcome = sync.sync(services, tenant_id, integration["_id"], job_id="run-2", full=False)
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert outcome.written == len(provider_set(fake, account.id)) - 2  # nothing written twice
    assert db["virtualFiles"].count_documents({"integrationId": integration["_id"]}) == 7


def test_a_run_over_its_budget_stops_at_a_checkpoint(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account("onedrive", files=[f"/f{n}.txt" for n in range(5)], page_size=2)
    everything = factories.project(db, tenant_id)
    integration = factories.integration_for(db, ring, tenant_id, account, project_ids=[everything["_id"]])
    conn = open_connection(services, tenant_id, integration["_id"])
    outcome = sync.Syncer(conn, job_id="budget-1", full=False, budget=0).run()
    assert outcome.continued is True
    assert outcome.pages == 1
    conn = open_connection(services, tenant_id, integration["_id"])
    rest = sync.Syncer(conn, job_id="budget-2", full=False, budget=60, carry=True).run()
    assert rest.continued is False
    assert stored_set(db, integration).keys() == provider_set(fake, account.id).keys()
    assert len(stored_set(db, integration)) == 5
    # One sync.completed for the whole sync, counting both runs (in the outbox, or relayed already).
    state = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["mwapTasks"]
    events = [e for e in state.get("webhookOutbox", []) if e["type"] == "sync.completed"]
    events += db["webhookEvents"].find({"tenantId": tenant_id, "type": "sync.completed"})
    mine = [e["data"] for e in events if e["data"]["integrationId"] == str(integration["_id"])]
    assert [(d["added"], d["changed"], d["deleted"]) for d in mine] == [(5, 0, 0)]
    assert "syncTotals" not in state


def test_project_router_prefers_the_closest_folder() -> None:
    i, j = ObjectId(), ObjectId()
    everything, team, other, off, archived = (ObjectId() for _ in range(5))
    router = sync.ProjectRouter(
        [
            {"_id": everything, "folderPath": "/", "integrations": [{"integrationId": i, "enabled": True}]},
            {"_id": team, "folderPath": "/Team", "integrations": [{"integrationId": i, "enabled": True}]},
            {
                "_id": other,
                "folderPath": "/Team/Deep",
                "integrations": [{"integrationId": j, "enabled": True}],
            },
            {"_id": off, "folderPath": "/Team/Off", "integrations": [{"integrationId": i, "enabled": False}]},
            {
                "_id": archived,
                "folderPath": "/Team/Old",
                "archived": True,
                "integrations": [{"integrationId": i, "enabled": True}],
            },
        ],
        i,
    )
    assert router.route("/Team/Deep/x") == team
    assert router.route("/team/x") == team
    assert router.route("/Team/Off/x") == team  # a disabled link holds no files
    assert router.route("/Team/Old/x") == team  # nor does an archived project
    assert router.route("/Teammate/x") == everything
    assert router.project_ids == sorted([everything, team])

    only_team = sync.ProjectRouter(
        [{"_id": team, "folderPath": "/Team", "integrations": [{"integrationId": i, "enabled": True}]}], i
    )
    assert only_team.route("/Other/x") is None
    assert only_team.fingerprint != router.fingerprint


def test_a_disabled_link_gets_no_files_and_toggling_it_reroutes(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account(
        "google-drive", files=["/d/one.txt", "/d/two.txt", "/three.txt"], page_size=2
    )
    project = factories.project(db, tenant_id, folderPath="/")
    integration = factories.integration_for(db, ring, tenant_id, account)
    factories.link(db, project["_id"], integration["_id"], enabled=False)

    succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert stored_set(db, integration) == {}
    assert db["virtualFiles"].count_documents({"projectId": project["_id"]}) == 0
    state = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["mwapTasks"]
    disabled_fingerprint = state["linksFingerprint"]
    assert state["lastSyncAt"] is not None

    # Enabled: the links fingerprint changes, so the next sync relists (nothing changed at the provider).
    set_link_enabled(db, project["_id"], integration["_id"], True)
    result = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert result["relisting"] is True
    assert stored_set(db, integration) == provider_set(fake, account.id)
    assert len(stored_set(db, integration)) == 4
    assert {d["projectId"] for d in db["virtualFiles"].find({"integrationId": integration["_id"]})} == {
        project["_id"]
    }
    enabled_fingerprint = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["mwapTasks"][
        "linksFingerprint"
    ]
    assert enabled_fingerprint != disabled_fingerprint
    assert db["projects"].find_one({"_id": project["_id"]})["metadata"]["fileCount"] == 3

    # An incremental run with the same links does not relist.
    again = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert again["relisting"] is False
    assert len(stored_set(db, integration)) == 4

    # Disabled again: the next sync removes every file of the project.
    set_link_enabled(db, project["_id"], integration["_id"], False)
    result = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert result["relisting"] is True
    assert result["deleted"] == 4
    assert stored_set(db, integration) == {}
    state = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["mwapTasks"]
    assert state["linksFingerprint"] == disabled_fingerprint


def test_an_archived_project_gets_no_files(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account("onedrive", files=["/A/one.txt", "/A/two.txt", "/B/three.txt"], page_size=3)
    archived = factories.project(db, tenant_id, folderPath="/A", archived=True)
    active = factories.project(db, tenant_id, folderPath="/B")
    integration = factories.integration_for(
        db, ring, tenant_id, account, project_ids=[archived["_id"], active["_id"]]
    )

    succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert db["virtualFiles"].count_documents({"projectId": archived["_id"]}) == 0
    assert stored_set(db, integration) == provider_set(fake, account.id, "/B")
    assert set(by_path(db, integration)) == {"/B", "/B/three.txt"}
    assert db["projects"].find_one({"_id": active["_id"]})["metadata"]["fileCount"] == 1
    assert db["projects"].find_one({"_id": archived["_id"]})["metadata"]["fileCount"] == 0

    # Archiving the project that held files removes them on the next sync.
    db["projects"].update_one({"_id": active["_id"]}, {"$set": {"archived": True}})
    result = succeeded(factories.run_integration_job(services, "integration.sync_files", integration))
    assert result["relisting"] is True
    assert stored_set(db, integration) == {}


def test_project_sync_runs_for_an_enabled_link_and_skips_a_disabled_one(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: ObjectId
) -> None:
    account = fake.create_account("dropbox", files=["/P/one.txt", "/P/two.txt", "/Q/three.txt"], page_size=2)
    enabled = factories.project(db, tenant_id, folderPath="/P")
    disabled = factories.project(db, tenant_id, folderPath="/Q")
    integration = factories.integration_for(db, ring, tenant_id, account, project_ids=[enabled["_id"]])
    factories.link(db, disabled["_id"], integration["_id"], enabled=False)

    def project_sync(project_id: ObjectId) -> dict[str, Any]:
        job = factories.enqueue_job(
            services,
            "project.sync_files",
            tenant_id,
            {"projectId": str(project_id), "integrationId": str(integration["_id"])},
        )
        assert job["type"] == "project.sync_files"
        return factories.wait_final(db, job["_id"])

    result = succeeded(project_sync(enabled["_id"]))
    assert "skipped" not in result
    assert result["project"]["id"] == str(enabled["_id"])
    assert result["project"]["fileCount"] == 2
    assert stored_set(db, integration) == provider_set(fake, account.id, "/P")
    assert db["virtualFiles"].count_documents({"projectId": disabled["_id"]}) == 0

    before = stored_set(db, integration)
    result = succeeded(project_sync(disabled["_id"]))
    assert result == {"skipped": "the project's link to the integration is disabled"}
    assert stored_set(db, integration) == before  # nothing ran
