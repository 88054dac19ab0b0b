"""``integration.sync_files``: incremental listing of a provider account into ``virtualFiles``.

Per page of changes: deletions applied, new and changed files written with one unordered bulk
upsert keyed by (integrationId, providerFileId) — unchanged files (same content hash of the mapped
document) are not rewritten — then the cursor is saved (a checkpoint). A crash resumes from the
last checkpoint; a rate limit re-enqueues the job to resume there after Retry-After; a run longer
than ``sync_time_budget`` stops at a checkpoint and enqueues its continuation. A relisting (first
sync, ``full``, a cursor the provider declared void, or a change in the integration's project
links) marks every file it sees with a run id and, at its end, deletes the files it did not see.

Documents follow seed 000's ``virtualFiles``: one per provider file of a linked, enabled,
non-archived project's folder, removed when the file goes (the seed has no deleted state). The
platform's own fields sit in ``mwapTasks`` (path key, parent, folder flag, change hash, run id).
"""

import hashlib
import json
import mimetypes
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import StrictBool
from pymongo import ASCENDING

from mwap import webhooks
from mwap.ids import oid
from mwap.indexes import Index
from mwap.jobtypes import JobType, Params, Queue, Retry, Schedule, Scope
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from mwap.store import TenantCollection
from tasks.dispatch import due_or_never, last_run_cutoff
from tasks.integrations import Connection, Skip, open_connection
from tasks.providers import ChangePage, CursorReset, FileItem, RateLimited, TransientProviderError
from worker.base import Job, JobTask, job_task

MAX_RETRIES = 8


@dataclass
class Outcome:
    pages: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    added: int = 0  # of ``written``, the files new to virtualFiles (for the sync.completed event)
    relisting: bool = False
    continued: bool = False
    cursor_reset: bool = field(default=False)

    def summary(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "written": self.written,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "relisting": self.relisting,
            "continued": self.continued,
        }


FOLDER_TYPE = "inode/directory"  # a folder's ``type`` when the provider gives no MIME type (Drive does)
UNKNOWN_TYPE = "application/octet-stream"


class ProjectRouter:
    """Which project a file belongs to: among the non-archived projects with an enabled link to
    the integration, the one whose ``folderPath`` holds the file most closely (no folderPath: "/").

    A file under no such folder is not kept in ``virtualFiles`` (seed 000: every virtual file has
    a ``projectId``).
    """

    def __init__(self, projects: Iterable[dict[str, Any]], integration_id: ObjectId) -> None:
        folders = []
        for project in projects:
            if project.get("archived") is True:
                continue
            for link in project.get("integrations") or []:
                if link.get("integrationId") == integration_id and link.get("enabled", True) is True:
                    folder = (project.get("folderPath") or "/").rstrip("/").casefold()
                    folders.append((folder, project["_id"]))
        self.folders = sorted(folders, key=lambda pair: (len(pair[0]), str(pair[1])), reverse=True)
        self.project_ids = sorted({project_id for _, project_id in folders})

    @property
    def fingerprint(self) -> str:
        """Changes whenever a link, folder or project changes: the files must be re-routed."""
        return hashlib.sha256(repr(sorted((f, str(p)) for f, p in self.folders)).encode()).hexdigest()[:32]

    def route(self, path: str) -> ObjectId | None:
        lowered = path.casefold()
        for folder, project_id in self.folders:
            if not folder or lowered == folder or lowered.startswith(folder + "/"):
                return project_id
        return None


def linked_projects(projects: TenantCollection, integration_id: ObjectId) -> list[dict[str, Any]]:
    return list(
        projects.find(
            {"integrations.integrationId": integration_id, "archived": {"$ne": True}},
            {"integrations": 1, "folderPath": 1, "archived": 1},
        )
    )


# Python's built-in table only (not the host's /etc/mime.types): the same answer on every worker.
_MIME = mimetypes.MimeTypes()


def file_type(item: FileItem) -> str:
    """Seed ``type`` (a MIME type): the provider's, else guessed from the file name (Dropbox gives none)."""
    if item.mime_type:
        return item.mime_type
    if item.is_folder:
        return FOLDER_TYPE
    return _MIME.guess_type(item.name, strict=False)[0] or UNKNOWN_TYPE


def mapped(item: FileItem, path: str, project_id: ObjectId, provider_id: ObjectId) -> dict[str, Any]:
    """The seed fields of a virtual file that come from the provider and its project."""
    return {
        "projectId": project_id,
        "providerId": provider_id,
        "name": item.name,
        "path": path,
        "type": file_type(item),
        "size": item.size or 0,
        "modifiedTime": item.modified_at,
        "metadata": {"permissions": [], **({"checksum": item.content_hash} if item.content_hash else {})},
    }


def content_hash(document: dict[str, Any]) -> str:
    def default(value: object) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return hashlib.sha256(json.dumps(document, sort_keys=True, default=default).encode()).hexdigest()


class IntegrationStopped(Skip):
    """The integration was disabled or removed while the sync ran: stop at the checkpoint."""


# The counts a sync.completed event reports for a whole sync, continuations included.
_TOTALS = ("added", "written", "deleted")


class Syncer:
    """One run over one integration."""

    def __init__(
        self, conn: Connection, *, job_id: str, full: bool, budget: float, carry: bool = False
    ) -> None:
        """``carry``: this run goes on from an earlier one (a continuation or a retry), whose counts
        stored at its checkpoints (``mwapTasks.syncTotals``) the sync.completed event adds up."""
        self.conn = conn
        self.integration_id = conn.integration_id
        self.provider_id = conn.integration["providerId"]
        scope = conn.services.store.tenant(conn.tenant_id)
        self.files: TenantCollection = scope["virtualFiles"]
        self.projects: TenantCollection = scope["projects"]
        self.router = ProjectRouter(linked_projects(self.projects, self.integration_id), self.integration_id)
        state = conn.integration.get("mwapTasks") or {}
        # Projects linked, unlinked, disabled or moved since the last run: relist to re-route.
        relink = state.get("linksFingerprint") != self.router.fingerprint
        self.cursor: str | None = None if full or relink else state.get("syncCursor")
        self.run_id: str | None = state.get("syncRunId") if self.cursor else job_id
        self.job_id = job_id
        self.deadline = time.monotonic() + budget
        self.outcome = Outcome(relisting=self.run_id is not None)
        self.carry = carry
        self._stored = (0, 0, 0)  # (added, written, deleted) of this run already in syncTotals

    def _unstored(self) -> dict[str, int]:
        """This run's counts not yet in ``mwapTasks.syncTotals``; marks them stored."""
        counts = (self.outcome.added, self.outcome.written, self.outcome.deleted)
        delta = {name: now_ - then for name, now_, then in zip(_TOTALS, counts, self._stored, strict=True)}
        self._stored = counts
        return delta

    def _totals_update(self) -> dict[str, Any]:
        """The update fragment that adds this run's new counts to the chain's (or starts them)."""
        delta = self._unstored()
        if self.carry:
            return {"$inc": {f"mwapTasks.syncTotals.{name}": n for name, n in delta.items()}}
        self.carry = True  # from now on the stored totals are this chain's
        return {"$set": {f"mwapTasks.syncTotals.{name}": n for name, n in delta.items()}}

    def run(self) -> Outcome:
        if self.cursor is None:
            self._checkpoint(None)  # a relisting starts: remember its run id before the first page
        for page in self.conn.client.changes(self.cursor):
            if page.reset and not self.outcome.relisting:
                self.run_id = self.job_id
                self.outcome.relisting = True
            self._apply(page)
            self.outcome.pages += 1
            self._checkpoint(page.next_cursor)
            if page.done:
                self._finish()
                return self.outcome
            if time.monotonic() > self.deadline:
                self.outcome.continued = True
                return self.outcome
        self._finish()
        return self.outcome

    def _apply(self, page: ChangePage) -> None:
        moment = now()
        base = {"integrationId": self.integration_id}
        # Deletions first, so an item moved within the page survives its own deletion entry.
        if page.deletions:
            result = self.files.delete_many({**base, "providerFileId": {"$in": list(page.deletions)}})
            self.outcome.deleted += result.deleted_count
        for gone in page.deleted_paths:
            prefix = gone.casefold().rstrip("/")[:4096]
            query = {
                **base,
                "$or": [
                    {"mwapTasks.pathLower": prefix},
                    {"mwapTasks.pathLower": {"$regex": f"^{re.escape(prefix)}/"}},
                ],
            }
            self.outcome.deleted += self.files.delete_many(query).deleted_count
        if not page.items:
            return
        ids = [item.provider_file_id for item in page.items]
        known = {
            doc["providerFileId"]: doc
            for doc in self.files.find(
                {**base, "providerFileId": {"$in": ids}},
                {"providerFileId": 1, "mwapTasks.docHash": 1, "path": 1},
            )
        }
        writes, unchanged, outside = [], [], []
        for item in page.items:
            before = known.get(item.provider_file_id)
            path = item.path or (before or {}).get("path") or f"/{item.name}"
            project_id = self.router.route(path)
            if project_id is None:
                # In no linked project's folder (or every link is disabled): not a virtual file.
                if before is not None:
                    outside.append(item.provider_file_id)
                continue
            fields = mapped(item, path, project_id, self.provider_id)
            digest = content_hash(fields)
            if before is not None and (before.get("mwapTasks") or {}).get("docHash") == digest:
                unchanged.append(item.provider_file_id)
                continue
            state = {
                "pathLower": path.casefold(),
                "parentId": item.parent_id,
                "isFolder": item.is_folder,
                "docHash": digest,
                **({"seenRun": self.run_id} if self.outcome.relisting else {}),
            }
            update: dict[str, Any] = {
                "$set": {
                    **fields,
                    **{f"mwapTasks.{name}": value for name, value in state.items()},
                    "syncStatus": {"lastSync": moment, "status": "synced"},
                    "updatedAt": moment,
                },
                "$setOnInsert": {"createdAt": moment},
            }
            writes.append(({**base, "providerFileId": item.provider_file_id}, update, True))
            self.outcome.added += before is None
        self.files.bulk_update(writes)
        if outside:
            self.outcome.deleted += self.files.delete_many(
                {**base, "providerFileId": {"$in": outside}}
            ).deleted_count
        if unchanged and self.outcome.relisting:
            self.files.update_many(
                {**base, "providerFileId": {"$in": unchanged}}, {"$set": {"mwapTasks.seenRun": self.run_id}}
            )
        self.outcome.written += len(writes)
        self.outcome.unchanged += len(unchanged)

    def _checkpoint(self, cursor: str | None) -> None:
        self.cursor = cursor
        # The counts go with the cursor they are counted up to: a retry resuming from this
        # checkpoint neither loses nor repeats them.
        totals = self._totals_update()
        saved = self.conn.integrations.update_one(
            # Only while the integration stays active: disabling it stops a running sync here.
            {"_id": self.integration_id, "status": "active"},
            {
                "$set": {
                    "mwapTasks.syncCursor": cursor,
                    "mwapTasks.syncRunId": self.run_id if self.outcome.relisting else None,
                    "mwapTasks.linksFingerprint": self.router.fingerprint,
                    **totals.get("$set", {}),
                },
                **({"$inc": totals["$inc"]} if "$inc" in totals else {}),
            },
        )
        self.conn.record_usage()
        if saved.matched_count == 0:
            raise IntegrationStopped("integration was disabled or removed during the sync")

    def _finish(self) -> None:
        moment = now()
        if self.outcome.relisting:
            # Whatever this relisting did not see is gone at the provider (or left every project).
            self.outcome.deleted += self.files.delete_many(
                {"integrationId": self.integration_id, "mwapTasks.seenRun": {"$ne": self.run_id}}
            ).deleted_count
        for project_id in self.router.project_ids:
            update_project_totals(self.files, self.projects, project_id, last_sync=moment)
        # The sync.completed webhook event is written with the completion itself, with the counts
        # of the whole sync: this run's, and those its earlier runs stored at their checkpoints.
        totals = self._unstored()
        if self.carry:
            state = self.conn.integrations.find_one({"_id": self.integration_id}, {"mwapTasks.syncTotals": 1})
            stored = ((state or {}).get("mwapTasks") or {}).get("syncTotals") or {}
            totals = {name: n + int(stored.get(name) or 0) for name, n in totals.items()}
        completed = webhooks.event(
            webhooks.SyncCompleted(
                integration_id=str(self.integration_id),
                added=totals["added"],
                changed=max(0, totals["written"] - totals["added"]),
                deleted=totals["deleted"],
            )
        )
        self.conn.integrations.update_one(
            {"_id": self.integration_id},
            {
                "$set": {
                    "mwapTasks.lastSyncAt": moment,
                    "mwapTasks.syncRunId": None,
                    "mwapTasks.lastSyncStats": self.outcome.summary(),
                },
                "$unset": {"mwapTasks.syncTotals": ""},
                **webhooks.outbox_push(completed),
            },
        )
        self.conn.record_usage()


def update_project_totals(
    files: TenantCollection, projects: TenantCollection, project_id: ObjectId, *, last_sync: datetime | None
) -> dict[str, int]:
    """Seed counters ``metadata.fileCount`` / ``metadata.totalSize`` of a project (folders excluded)."""
    totals = list(
        files.aggregate(
            [
                {"$match": {"projectId": project_id, "mwapTasks.isFolder": {"$ne": True}}},
                {"$group": {"_id": None, "count": {"$sum": 1}, "size": {"$sum": {"$ifNull": ["$size", 0]}}}},
            ]
        )
    )
    count, size = (totals[0]["count"], totals[0]["size"]) if totals else (0, 0)
    fields: dict[str, Any] = {"metadata.fileCount": count, "metadata.totalSize": size}
    if last_sync is not None:
        fields["metadata.lastSync"] = last_sync
    projects.update_one({"_id": project_id}, {"$set": fields})
    return {"fileCount": count, "totalSize": size}


def sync(
    services: Services,
    tenant_id: ObjectId | str,
    integration_id: ObjectId | str,
    *,
    job_id: str,
    full: bool,
    carry: bool = False,
) -> Outcome:
    conn = open_connection(services, tenant_id, integration_id)
    try:
        budget = services.settings.sync_time_budget
        return Syncer(conn, job_id=job_id, full=full, budget=budget, carry=carry).run()
    finally:
        conn.record_usage()


def check_project_link(
    services: Services, tenant_id: ObjectId | str, project_id: str, integration_id: str
) -> None:
    """Skip unless the project exists, is not archived and has an enabled link to the integration."""
    project = services.store.tenant(tenant_id)["projects"].find_one(
        {"_id": oid(project_id)}, {"archived": 1, "integrations": 1}
    )
    if project is None:
        raise Skip("project no longer exists")
    if project.get("archived") is True:
        raise Skip("project is archived")
    links = [
        link for link in project.get("integrations") or [] if link.get("integrationId") == oid(integration_id)
    ]
    if not links:
        raise Skip("integration is not linked to the project")
    if links[0].get("enabled", True) is not True:
        raise Skip("the project's link to the integration is disabled")


def run_sync(task: JobTask, job: Job, *, project_id: str | None) -> dict[str, Any]:
    """The body of both sync jobs: retries resume from the checkpoint, long runs continue later."""
    services = task.services()
    tenant_id, integration_id = job.tenant, job.subject["integrationId"]
    if project_id is not None:
        check_project_link(services, tenant_id, project_id, integration_id)
    # "full" restarts the listing on the first attempt only; retries resume from the checkpoint.
    full = bool(job.params.get("full")) and job.attempts == 1
    try:
        # A continuation, or a retry resuming from a checkpoint, adds to the counts stored so far.
        carry = job.continues is not None or job.attempts > 1
        outcome = sync(services, tenant_id, integration_id, job_id=job.id, full=full, carry=carry)
    except CursorReset:
        # Void twice in one run: drop the cursor so the retry starts a clean relisting.
        services.store.tenant(tenant_id)["cloudIntegrations"].update_one(
            {"_id": oid(integration_id)},
            {"$set": {"mwapTasks.syncCursor": None, "mwapTasks.syncRunId": None}},
        )
        raise
    if outcome.continued:
        task.continue_later(job, params={**job.params, "full": False})
    summary = outcome.summary()
    if project_id is not None:
        project = services.store.tenant(tenant_id)["projects"].find_one(
            {"_id": oid(project_id)}, {"metadata": 1}
        )
        summary["project"] = {"id": project_id, **((project or {}).get("metadata") or {})}
    return summary


def due(settings: Settings, moment: datetime) -> dict[str, Any]:
    """Active integrations never synced, or last synced longer ago than the interval (less the
    dispatcher's half-tick tolerance: it ticks every sync interval)."""
    cutoff = last_run_cutoff(moment, settings.sync_interval, tick=settings.sync_interval)
    return {"status": "active", "$or": due_or_never("mwapTasks.lastSyncAt", cutoff)}


class SyncParams(Params):
    full: StrictBool = False  # relist everything instead of following the saved cursor


# A rate limit or a provider hiccup retries from the last checkpoint (after Retry-After when the
# provider gives one); a cursor the provider voids twice in one run retries as a relisting.
SYNC_RETRY = Retry(on=(RateLimited, TransientProviderError, CursorReset), max_retries=MAX_RETRIES)

SYNC_FILES = JobType(
    "integration.sync_files",
    Scope.INTEGRATION,
    Queue.SYNC,
    SyncParams,
    "Incremental listing of the provider account into virtualFiles.",
    schedule=Schedule(
        interval="sync_interval",
        due=due,
        index=Index(
            "cloudIntegrations", "mwap_due_sync", [("status", ASCENDING), ("mwapTasks.lastSyncAt", ASCENDING)]
        ),
    ),
    retry=SYNC_RETRY,
    skip_on=(Skip,),
)

PROJECT_SYNC_FILES = JobType(
    "project.sync_files",
    Scope.PROJECT,
    Queue.SYNC,
    SyncParams,
    "Seed sync-virtual-files {projectId, integrationId}: the integration's sync, run for one "
    "project whose link is enabled; shares the integration sync's lease.",
    retry=SYNC_RETRY,
    skip_on=(Skip,),
    lease_kind=SYNC_FILES.name,
)


@job_task(SYNC_FILES)
def sync_files(self: JobTask, job: Job) -> dict[str, Any]:
    return run_sync(self, job, project_id=None)


@job_task(PROJECT_SYNC_FILES)
def sync_project_files(self: JobTask, job: Job) -> dict[str, Any]:
    """Seed ``sync-virtual-files {projectId, integrationId}``: the integration's sync, run for one
    project (checked: not archived, link enabled); shares the integration sync's lease."""
    return run_sync(self, job, project_id=job.subject["projectId"])
