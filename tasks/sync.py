"""``integration.sync_files``: incremental listing of a provider account into ``virtualFiles``.

Per page of changes: deletions applied, new and changed files written with one unordered bulk
upsert keyed by (integrationId, providerFileId) — unchanged files (same content hash of the mapped
document) are not rewritten — then the cursor is saved (a checkpoint). A crash resumes from the
last checkpoint; a rate limit re-enqueues the job to resume there after Retry-After; a run longer
than ``sync_time_budget`` stops at a checkpoint and enqueues its continuation. A relisting (first
sync, ``full``, or a cursor the provider declared void) marks every file it sees with a run id
and, at its end, marks deleted the files it did not see.
"""

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import shared_task

from mwap.ledger import now
from mwap.store import Store, TenantCollection
from tasks.integrations import Connection, Skip, open_connection
from tasks.providers import ChangePage, CursorReset, FileItem, RateLimited, TransientProviderError
from worker.base import Job, JobTask, Services

MAX_RETRIES = 8


@dataclass
class Outcome:
    pages: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
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


class ProjectRouter:
    """Which linked project a file belongs to: the one whose folder holds it most closely."""

    def __init__(self, projects: Iterable[dict[str, Any]], integration_id: str) -> None:
        folders = []
        for project in projects:
            for link in project.get("integrations") or []:
                if link.get("integrationId") == integration_id:
                    folder = (link.get("folderPath") or "/").rstrip("/").casefold()
                    folders.append((folder, project["_id"]))
        self.folders = sorted(folders, key=lambda pair: len(pair[0]), reverse=True)
        self.project_ids = sorted({project_id for _, project_id in folders})

    def route(self, path: str) -> str | None:
        lowered = path.casefold()
        for folder, project_id in self.folders:
            if not folder or lowered == folder or lowered.startswith(folder + "/"):
                return project_id
        return None


def file_id(integration_id: str, provider_file_id: str) -> str:
    """Deterministic ``_id``: concurrent or repeated upserts of one file converge on one document."""
    return hashlib.sha256(f"{integration_id}\0{provider_file_id}".encode()).hexdigest()[:32]


def mapped(item: FileItem, path: str, project_id: str | None) -> dict[str, Any]:
    """The fields of a virtual file that come from the provider (and the project it falls in)."""
    return {
        "name": item.name,
        "path": path,
        "pathLower": path.casefold(),
        "parentId": item.parent_id,
        "isFolder": item.is_folder,
        "mimeType": item.mime_type,
        "size": item.size or 0,
        "modifiedAt": item.modified_at,
        "contentHash": item.content_hash,
        "projectId": project_id,
    }


def content_hash(document: dict[str, Any]) -> str:
    def default(value: object) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return hashlib.sha256(json.dumps(document, sort_keys=True, default=default).encode()).hexdigest()


class Syncer:
    """One run over one integration."""

    def __init__(self, conn: Connection, *, job_id: str, full: bool, budget: float) -> None:
        self.conn = conn
        self.integration_id = conn.integration_id
        scope = Store(conn.services.db).tenant(conn.tenant_id)
        self.files: TenantCollection = scope["virtualFiles"]
        self.projects: TenantCollection = scope["projects"]
        self.router = ProjectRouter(
            self.projects.find({"integrations.integrationId": self.integration_id}), self.integration_id
        )
        metadata = conn.integration.get("metadata") or {}
        self.cursor: str | None = None if full else metadata.get("syncCursor")
        self.run_id: str | None = metadata.get("syncRunId") if self.cursor else job_id
        self.job_id = job_id
        self.deadline = time.monotonic() + budget
        self.outcome = Outcome(relisting=self.run_id is not None)

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
        deleted_state = {
            "deletedAt": moment,
            "syncStatus": {"status": "deleted", "lastSyncedAt": moment},
            "updatedAt": moment,
        }
        base = {"integrationId": self.integration_id, "deletedAt": None}
        # Deletions first, so an item moved within the page survives its own deletion entry.
        if page.deletions:
            result = self.files.update_many(
                {**base, "providerFileId": {"$in": list(page.deletions)}}, {"$set": deleted_state}
            )
            self.outcome.deleted += result.modified_count
        for gone in page.deleted_paths:
            prefix = gone.casefold().rstrip("/")
            query = {
                **base,
                "$or": [{"pathLower": prefix}, {"pathLower": {"$regex": f"^{re.escape(prefix)}/"}}],
            }
            self.outcome.deleted += self.files.update_many(query, {"$set": deleted_state}).modified_count
        if not page.items:
            return
        ids = [item.provider_file_id for item in page.items]
        known = {
            doc["providerFileId"]: doc
            for doc in self.files.find(
                {"integrationId": self.integration_id, "providerFileId": {"$in": ids}},
                {"providerFileId": 1, "docHash": 1, "path": 1, "deletedAt": 1},
            )
        }
        writes, unchanged = [], []
        for item in page.items:
            before = known.get(item.provider_file_id)
            path = item.path or (before or {}).get("path") or f"/{item.name}"
            fields = mapped(item, path, self.router.route(path))
            digest = content_hash(fields)
            if before is not None and before.get("docHash") == digest and before.get("deletedAt") is None:
                unchanged.append(item.provider_file_id)
                continue
            update: dict[str, Any] = {
                "$set": {
                    **fields,
                    "docHash": digest,
                    "syncStatus": {"status": "synced", "lastSyncedAt": moment, "error": None},
                    "deletedAt": None,
                    "updatedAt": moment,
                    **({"seenRun": self.run_id} if self.outcome.relisting else {}),
                },
                "$setOnInsert": {
                    "_id": file_id(self.integration_id, item.provider_file_id),
                    "createdAt": moment,
                },
            }
            writes.append(
                (
                    {"integrationId": self.integration_id, "providerFileId": item.provider_file_id},
                    update,
                    True,
                )
            )
        self.files.bulk_update(writes)
        if unchanged and self.outcome.relisting:
            self.files.update_many(
                {"integrationId": self.integration_id, "providerFileId": {"$in": unchanged}},
                {"$set": {"seenRun": self.run_id}},
            )
        self.outcome.written += len(writes)
        self.outcome.unchanged += len(unchanged)

    def _checkpoint(self, cursor: str | None) -> None:
        self.cursor = cursor
        self.conn.integrations.update_one(
            {"_id": self.integration_id},
            {
                "$set": {
                    "metadata.syncCursor": cursor,
                    "metadata.syncRunId": self.run_id if self.outcome.relisting else None,
                }
            },
        )
        self.conn.record_usage()

    def _finish(self) -> None:
        moment = now()
        if self.outcome.relisting:
            # Whatever this relisting did not see is gone at the provider.
            self.outcome.deleted += self.files.update_many(
                {"integrationId": self.integration_id, "deletedAt": None, "seenRun": {"$ne": self.run_id}},
                {
                    "$set": {
                        "deletedAt": moment,
                        "syncStatus": {"status": "deleted", "lastSyncedAt": moment},
                        "updatedAt": moment,
                    }
                },
            ).modified_count
        for project_id in self.router.project_ids:
            totals = list(
                self.files.aggregate(
                    [
                        {"$match": {"projectId": project_id, "deletedAt": None, "isFolder": False}},
                        {"$group": {"_id": None, "count": {"$sum": 1}, "size": {"$sum": "$size"}}},
                    ]
                )
            )
            count, size = (totals[0]["count"], totals[0]["size"]) if totals else (0, 0)
            self.projects.update_one(
                {"_id": project_id},
                {
                    "$set": {
                        "metadata.fileCount": count,
                        "metadata.totalSize": size,
                        "metadata.lastSync": moment,
                    }
                },
            )
        self.conn.integrations.update_one(
            {"_id": self.integration_id},
            {
                "$set": {
                    "metadata.lastSyncAt": moment,
                    "metadata.syncRunId": None,
                    "metadata.lastSyncStats": self.outcome.summary(),
                }
            },
        )
        self.conn.record_usage()


def sync(services: Services, tenant_id: str, integration_id: str, *, job_id: str, full: bool) -> Outcome:
    conn = open_connection(services, tenant_id, integration_id)
    try:
        return Syncer(conn, job_id=job_id, full=full, budget=services.settings.sync_time_budget).run()
    finally:
        conn.record_usage()


@shared_task(bind=True, base=JobTask, name="integration.sync_files", max_retries=MAX_RETRIES)
def sync_files(self: JobTask, job: Job) -> dict[str, Any]:
    services = self.services()
    tenant_id, integration_id = job.tenant_id, job.subject["integrationId"]
    try:
        # "full" restarts the listing on the first attempt only; retries resume from the checkpoint.
        full = bool(job.params.get("full")) and job.attempts == 1
        outcome = sync(services, tenant_id, integration_id, job_id=job.id, full=full)
    except Skip as skip:
        return {"skipped": str(skip)}
    except CursorReset as error:
        # Void twice in one run: drop the cursor so the retry starts a clean relisting.
        Store(services.db).tenant(tenant_id)["cloudIntegrations"].update_one(
            {"_id": integration_id}, {"$set": {"metadata.syncCursor": None, "metadata.syncRunId": None}}
        )
        raise self.retry(exc=error, countdown=self.backoff(error)) from None
    except (RateLimited, TransientProviderError) as error:
        # The last page's checkpoint is saved: the retry resumes there, after Retry-After.
        raise self.retry(exc=error, countdown=self.backoff(error)) from None
    if outcome.continued:
        self.continue_later(job, params={**job.params, "full": False})
    return outcome.summary()
