"""Documents written by the platform's first releases converted to seed 000's shapes (and back).

Until commit 8eecc95 ("Data contract: seed 000 models, ObjectId ids, …") the platform wrote its
own shapes (``mwap/models.py``, ``mwap/registry.py``, ``tasks/*.py`` of 5e6e1cd … a9c1c17):

- string ids everywhere: ``ten_…``/``int_…``/``prj_…`` or caller-chosen ids, the slug for a
  provider, a 32-hex hash for a virtual file, ``<tenant>:<day>`` for a usage day; and string
  ``tenantId``/``integrationId``/``projectId``/``providerId`` references, also in ``apiKeys``,
  ``auditLogs`` and the ``jobs`` ledger (``tenantId`` and the ``subject`` ids);
- tenants: ``status`` active | suspended | archived, no ``ownerId``, ``settings.allowedProviders``
  and ``settings.maxConcurrentJobs``;
- projects: ``status``, lowercase member roles (and ``viewer``), links ``{integrationId,
  folderPath}``;
- providers: ``status``, no ``grantType``/``tokenMethod``; the client secret sealed under the
  string id;
- integrations: ``providerSlug``, ``name``, ``statusReason``, status ``revoked``, ``authData.scope``
  a string and ``authData.tokenType``, ``userInfo.id``, health status ``unknown``, the platform's
  state under ``metadata`` (``lastSyncAt``, ``syncCursor``, ``lastRefreshAt``, …); tokens sealed
  under the string ids;
- virtual files: ``mimeType``, ``modifiedAt``, ``contentHash``, ``pathLower``/``parentId``/
  ``isFolder``/``docHash``/``seenRun`` at the top level, ``syncStatus.lastSyncedAt``, soft deletion
  (``deletedAt``, status ``deleted``) and files in no project (``projectId: null``);
- indexes of those fields (``slug_unique``, ``tenant_name_unique``, ``due_sync`` on
  ``metadata.lastSyncAt``, …), some with the keys of a seed index under another name, which
  MongoDB refuses beside it.

Each becomes what seed 000 and the platform's ``mwapTasks`` say (``reshape`` keeps what the way
back needs). Where the seed has no place for a value it is kept in the stash, and a choice is made:
a suspended tenant or project becomes ``archived`` (the old platform gave it no jobs either), a
revoked integration ``inactive``, a ``viewer`` a ``MEMBER``, ``unknown`` health ``healthy`` (the
platform's default), a tenant gets the placeholder owner ``mwap-legacy|<old id>`` (the seed's
unique index needs one per tenant); a project whose links had different folders takes the first
link's folder (counted); deleted files and files in no project are set aside in the stash (seed
files always belong to a project; the platform now deletes such files). Runs before the index
migration, whose unique indexes the old documents would violate.
"""

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo.operations import ReplaceOne

from mwap.crypto import ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN
from mwap.migrations import reshape
from mwap.migrations.context import Run
from mwap.migrations.reshape import (
    MISSING,
    Convert,
    Default,
    Drop,
    MoveAll,
    Ref,
    Rename,
    Reseal,
    Shape,
    State,
    get,
    pop,
    put,
    seed_id,
)
from mwap.store import Document

TENANTS, PROJECTS, PROJECT_TYPES = "tenants", "projects", "projectTypes"
PROVIDERS, INTEGRATIONS, FILES = "cloudProviders", "cloudIntegrations", "virtualFiles"

# What ``tasks.sync`` writes as a virtual file's ``type`` when the provider gives no MIME type.
FOLDER_TYPE, UNKNOWN_TYPE = "inode/directory", "application/octet-stream"


class StatusToArchived:
    """``status`` (active | suspended | archived) → ``archived`` (anything but active)."""

    def up(self, doc: dict[str, Any], state: State) -> None:
        status = pop(doc, "status")
        if status is MISSING:
            return
        state.was["status"] = status
        if get(doc, "archived") is MISSING:
            put(doc, "archived", status != "active")
            state.added.append("archived")

    def down(self, doc: dict[str, Any], state: State) -> None:
        if "status" not in state.was:
            return
        archived = doc.get("archived") is True
        old = state.was["status"]
        put(doc, "status", old if (old != "active") == archived else ("archived" if archived else "active"))
        if "archived" in state.added:
            pop(doc, "archived")


class ProjectLinks:
    """Links ``{integrationId, folderPath}`` → seed ``{integrationId, enabled}``, the folder moving
    to the project's ``folderPath`` (one per project in the seed: the first link's when they differ)."""

    @staticmethod
    def _links(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "integrationId": seed_id(INTEGRATIONS, link["integrationId"])
                if isinstance(link.get("integrationId"), str)
                else link.get("integrationId"),
                "enabled": True,
            }
            for link in links
        ]

    def up(self, doc: dict[str, Any], state: State) -> None:
        links = get(doc, "integrations")
        if not isinstance(links, list) or not any("folderPath" in link for link in links):
            return
        state.was["integrations"] = links
        put(doc, "integrations", self._links(links))
        folders = [link.get("folderPath") or "/" for link in links]
        if len(set(folders)) > 1:
            state.notes.append("projects whose links had different folders (the first link's kept)")
        if folders[0] != "/" and get(doc, "folderPath") is MISSING:
            put(doc, "folderPath", folders[0])
            state.added.append("folderPath")

    def down(self, doc: dict[str, Any], state: State) -> None:
        if "integrations" not in state.was:
            return
        old, current = state.was["integrations"], doc.get("integrations")
        if current == self._links(old):
            doc["integrations"] = old
        elif isinstance(current, list):
            folder = doc.get("folderPath") or "/"
            doc["integrations"] = [
                {
                    "integrationId": state.legacy_of(INTEGRATIONS, link.get("integrationId")),
                    "folderPath": folder,
                }
                for link in current
            ]
        if "folderPath" in state.added:
            pop(doc, "folderPath")


class FileType:
    """``mimeType`` (possibly null) → seed ``type`` (a MIME type, as the sync writes it)."""

    @staticmethod
    def _type(mime: Any, doc: Mapping[str, Any]) -> Any:
        return mime or (FOLDER_TYPE if doc.get("isFolder") is True else UNKNOWN_TYPE)

    def up(self, doc: dict[str, Any], state: State) -> None:
        mime = pop(doc, "mimeType")
        if mime is MISSING:
            return
        state.was["mimeType"] = mime
        put(doc, "type", self._type(mime, doc))

    def down(self, doc: dict[str, Any], state: State) -> None:
        if "mimeType" not in state.was:
            return
        kind, old = pop(doc, "type"), state.was["mimeType"]
        doc["mimeType"] = old if kind == self._type(old, doc) else kind


def _mapped(path: str, table: Mapping[str, str]) -> Convert:
    """An enum value renamed by ``table``; back, the old value if unchanged, else the current one."""
    return Convert(path, lambda value: table.get(value, value), lambda value, _state: value)


ROLES = {"owner": "OWNER", "deputy": "DEPUTY", "member": "MEMBER", "viewer": "MEMBER"}
SUBJECT_REFS = {"tenantId": TENANTS, "integrationId": INTEGRATIONS, "projectId": PROJECTS}


def _roles_up(members: Any) -> Any:
    if not isinstance(members, list):
        return members
    return [
        {**m, "role": ROLES.get(str(m.get("role")), m.get("role"))} if isinstance(m, dict) else m
        for m in members
    ]


def _roles_down(members: Any, _state: State) -> Any:
    if not isinstance(members, list):
        return members
    return [{**m, "role": str(m.get("role", "")).lower()} if isinstance(m, dict) else m for m in members]


def _subject_up(subject: Any) -> Any:
    if not isinstance(subject, dict):
        return subject
    return {
        key: str(seed_id(SUBJECT_REFS[key], value))
        if key in SUBJECT_REFS and isinstance(value, str)
        else value
        for key, value in subject.items()
    }


def _subject_down(subject: Any, state: State) -> Any:
    if not isinstance(subject, dict):
        return subject
    return {
        key: state.legacy_of(SUBJECT_REFS[key], ObjectId(value))
        if key in SUBJECT_REFS and isinstance(value, str) and ObjectId.is_valid(value)
        else value
        for key, value in subject.items()
    }


def _scope_up(scope: Any) -> Any:
    return scope.split() if isinstance(scope, str) else scope


def _scope_down(scope: Any, _state: State) -> Any:
    return " ".join(scope) if isinstance(scope, list) else scope


def _or_none(value: Any) -> Any:
    return None if value is MISSING else value


def _features(doc: dict[str, Any], _state: State) -> dict[str, bool]:
    # An empty provider allow-list meant "no integrations" in the old settings.
    allowed = get(doc, "settings.allowedProviders")
    return {
        "cloudIntegrations": bool(allowed) if isinstance(allowed, list) else True,
        "advancedSecurity": False,
        "customBranding": False,
    }


def _file_providers(run: Run, batch: list[Document]) -> Mapping[str, Any]:
    """Each old integration id of the batch → its provider's new id (the file's seed ``providerId``),
    whether the integration is converted already or not."""
    legacy = {doc["integrationId"] for doc in batch if isinstance(doc.get("integrationId"), str)}
    by_new = {seed_id(INTEGRATIONS, old): old for old in legacy}
    providers = {}
    for integration in run.db[INTEGRATIONS].find({"_id": {"$in": [*legacy, *by_new]}}, {"providerId": 1}):
        old = integration["_id"] if isinstance(integration["_id"], str) else by_new[integration["_id"]]
        provider = integration.get("providerId")
        providers[old] = seed_id(PROVIDERS, provider) if isinstance(provider, str) else provider
    return {"providers": providers}


def _set_file_aside(doc: Document, extra: Mapping[str, Any]) -> str | None:
    if doc.get("deletedAt") is not None or (doc.get("syncStatus") or {}).get("status") == "deleted":
        return "deleted"
    if doc.get("projectId") is None:
        return "in no project"
    if extra["providers"].get(doc.get("integrationId")) is None:
        return "integration gone"
    return None


SHAPES = (
    Shape(
        TENANTS,
        (
            StatusToArchived(),
            Default("ownerId", lambda _doc, state: f"mwap-legacy|{state.legacy_id}"),
            Default("settings.allowPublicProjects", lambda _doc, _state: False),
            Default("settings.features", _features),
            Drop("settings.allowedProviders"),
            Drop("settings.maxConcurrentJobs"),
        ),
    ),
    Shape(PROJECT_TYPES, ()),
    Shape(
        PROVIDERS,
        (
            Drop("status"),
            Default("grantType", lambda _doc, _state: "authorization_code"),
            Default("tokenMethod", lambda _doc, _state: "POST"),
            Reseal(CLIENT_SECRET),
        ),
        unique=(("slug",), ("name",)),
    ),
    Shape(
        INTEGRATIONS,
        (
            Ref("tenantId", TENANTS),
            Ref("providerId", PROVIDERS),
            _mapped("status", {"revoked": "inactive"}),
            Drop("providerSlug"),
            Drop("name"),
            Convert("authData.scope", _scope_up, _scope_down),
            Drop("authData.tokenType"),
            Rename("userInfo.id", "userInfo.providerId"),
            _mapped("health.status", {"unknown": "healthy"}),
            MoveAll("metadata", "mwapTasks"),
            Rename("statusReason", "mwapTasks.statusReason"),
            # The old health dispatcher's clock was health.lastCheck; the platform's is its own.
            Default("mwapTasks.healthCheckedAt", lambda doc, _state: _or_none(get(doc, "health.lastCheck"))),
            Reseal(ACCESS_TOKEN),
            Reseal(REFRESH_TOKEN),
        ),
        unique=(("tenantId", "providerId"),),
    ),
    Shape(
        PROJECTS,
        (
            Ref("tenantId", TENANTS),
            Ref("projectTypeId", PROJECT_TYPES),
            StatusToArchived(),
            Convert("members", _roles_up, _roles_down),
            ProjectLinks(),
            Default("config", lambda _doc, _state: {}),
        ),
    ),
    Shape(
        FILES,
        (
            Ref("tenantId", TENANTS),
            Ref("integrationId", INTEGRATIONS),
            Ref("projectId", PROJECTS),
            Default(
                "providerId", lambda _doc, state: state.extra["providers"].get(state.was.get("integrationId"))
            ),
            FileType(),
            Rename("modifiedAt", "modifiedTime"),
            Rename("contentHash", "metadata.checksum"),
            Default("metadata.permissions", lambda _doc, _state: []),
            *(
                Rename(name, f"mwapTasks.{name}")
                for name in ("pathLower", "parentId", "isFolder", "docHash", "seenRun")
            ),
            Rename("syncStatus.lastSyncedAt", "syncStatus.lastSync"),
            Drop("deletedAt"),
        ),
        set_aside=_set_file_aside,
        prepare=_file_providers,
    ),
    Shape("usageDaily", (Ref("tenantId", TENANTS),)),
    Shape("apiKeys", (Ref("tenantId", TENANTS),), marker="tenantId"),
    Shape("auditLogs", (Ref("tenantId", TENANTS),), marker="tenantId"),
    Shape(
        "jobs", (Ref("tenantId", TENANTS), Convert("subject", _subject_up, _subject_down)), marker="tenantId"
    ),
)

# The old platform's indexes on fields of its own shapes (its `mwap db init` of a9c1c17): name →
# keys. Those it shared with today's set (jobs, auditLogs, usageDaily, apiKeys) are left alone.
LEGACY_INDEXES = {
    TENANTS: {"status_1": [("status", 1), ("_id", 1)]},
    PROJECT_TYPES: {"name_unique": [("name", 1)]},
    PROVIDERS: {"slug_unique": [("slug", 1)]},
    PROJECTS: {
        "tenant_name_unique": [("tenantId", 1), ("name", 1)],
        "tenant_integration": [("tenantId", 1), ("integrations.integrationId", 1)],
    },
    INTEGRATIONS: {
        "tenant_provider_account_unique": [("tenantId", 1), ("providerId", 1), ("userInfo.id", 1)],
        "tenant_status": [("tenantId", 1), ("status", 1)],
        "due_health": [("status", 1), ("health.lastCheck", 1)],
        "due_refresh": [("status", 1), ("authData.expiresAt", 1)],
        "due_refresh_idle": [("status", 1), ("metadata.lastRefreshAt", 1)],
        "due_sync": [("status", 1), ("metadata.lastSyncAt", 1)],
    },
    FILES: {
        "integration_file_unique": [("integrationId", 1), ("providerFileId", 1)],
        "tenant_integration_path": [("tenantId", 1), ("integrationId", 1), ("path", 1)],
        "tenant_project": [("tenantId", 1), ("projectId", 1)],
        "tenant_deleted": [("tenantId", 1), ("deletedAt", 1)],
    },
}
_INDEX_ENTRY = "indexes"  # the stash's ``c`` for an index dropped on the way up


def _drop_legacy_indexes(run: Run) -> None:
    present = set(run.db.list_collection_names())
    for collection, legacy in LEGACY_INDEXES.items():
        if collection not in present:
            continue
        for name, info in run.db[collection].index_information().items():
            keys = [(field, int(direction)) for field, direction in info["key"]]
            if legacy.get(name) != keys:
                continue
            run.count("old indexes dropped")
            options = {k: v for k, v in info.items() if k not in {"key", "v", "ns"}}
            spec = {
                "c": _INDEX_ENTRY,
                "id": f"{collection}.{name}",
                "keys": [list(k) for k in keys],
                "options": options,
            }
            run.write(reshape.STASH, [ReplaceOne({"c": _INDEX_ENTRY, "id": spec["id"]}, spec, upsert=True)])
            if not run.dry_run:
                run.check_lock()
                run.db[collection].drop_index(name)


def _restore_legacy_indexes(run: Run) -> None:
    for spec in run.db[reshape.STASH].find({"c": _INDEX_ENTRY}):
        collection = spec["id"].split(".", 1)[0]
        run.check_lock()
        options = dict(spec["options"])
        name = options.pop("name", spec["id"].split(".", 1)[1])
        run.db[collection].create_index(
            [(field, direction) for field, direction in spec["keys"]], name=name, **options
        )
        run.db[reshape.STASH].delete_one({"_id": spec["_id"]})
        run.count("old indexes restored")


def up(run: Run) -> None:
    reshape.ensure_stash(run)
    for shape in SHAPES:
        reshape.check_unique(run, shape)  # all before anything: a clash found late leaves a half-way database
    _drop_legacy_indexes(run)
    for shape in SHAPES:
        reshape.up(run, shape)
    reshape.drop_stash_if_empty(run)  # nothing to undo (a database that never held old documents)


def down(run: Run) -> None:
    for shape in reversed(SHAPES):
        reshape.down(run, shape)
    _restore_legacy_indexes(run)
    reshape.drop_stash_if_empty(run)
