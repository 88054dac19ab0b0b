"""In-memory state of the fake providers: accounts, file trees, change logs, tokens and faults.

Every mutation appends ``(file_id, gone_path)`` to the account's change log; cursors are indexes
into that log (plus an ``epoch`` that a cursor-reset fault bumps to void them all), so 100,000
files cost one slotted object each and a listing page costs only the page. Files present when the
account is created are its initial state and are not logged.
"""

import itertools
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

GOOGLE, DROPBOX, ONEDRIVE = "google-drive", "dropbox", "onedrive"
PROVIDERS = (GOOGLE, DROPBOX, ONEDRIVE)
FAULT_KINDS = frozenset({"status", "timeout", "unauthorized", "invalid_grant", "drive_rate_limit"})
MAX_DEPTH = 256


class ControlError(Exception):
    """A control-API request that cannot be honoured; becomes a 4xx reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class FakeFile:
    """One file or folder; ``version`` changes with the content and feeds the fake hashes."""

    id: str
    name: str
    parent_id: str
    is_folder: bool
    size: int = 0
    modified: float = 0.0
    version: int = 1
    mime_type: str | None = None
    trashed: bool = False


@dataclass(slots=True)
class Fault:
    """An injected misbehaviour for the next ``remaining`` matching calls (None: until cleared).

    ``endpoint`` is a glob over endpoint names (``google.files.*``); unset, it matches every API
    endpoint, or every token endpoint for ``invalid_grant``.
    """

    kind: str
    remaining: int | None = 1
    endpoint: str | None = None
    status: int = 503
    retry_after: str | None = None
    hang_seconds: float = 10.0
    reason: str | None = None
    message: str | None = None

    def matches(self, endpoint: str) -> bool:
        """Whether this fault applies to a call of ``endpoint``."""
        if self.endpoint is not None:
            return fnmatchcase(endpoint, self.endpoint)
        is_token = endpoint.endswith(".token")
        return is_token if self.kind == "invalid_grant" else not is_token


@dataclass(slots=True)
class Change:
    """One entry of an incremental listing: a file's current state, or a vanished path (Dropbox)."""

    file_id: str
    file: FakeFile | None
    gone_path: str | None = None


class Account:
    """One connected account of one provider. Callers hold the store lock."""

    def __init__(
        self,
        account_id: str,
        provider: str,
        *,
        email: str,
        display_name: str,
        page_size: int,
        token_lifetime: float,
    ) -> None:
        self.id = account_id
        self.provider = provider
        self.email = email
        self.display_name = display_name
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.latency = 0.0
        self.root_id = f"root-{account_id}"
        self.files: dict[str, FakeFile] = {}
        self.children: dict[str, set[str]] = {self.root_id: set()}
        self.names: dict[tuple[str, str], str] = {}  # (parent id, casefolded name) -> id
        self.order: list[str] = []  # listing order; ids of removed files stay as tombstones
        self.log: list[tuple[str, str | None]] = []
        self.last_seq: dict[str, int] = {}
        self.epoch = 1
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.refresh_grants = 0
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self._ids = itertools.count(1)

    # -- reading ------------------------------------------------------------------------------

    def live(self, file_id: str) -> FakeFile | None:
        """The file if it exists and is not in the trash."""
        found = self.files.get(file_id)
        return found if found is not None and not found.trashed else None

    def require(self, file_id: str) -> FakeFile:
        """The live file or a 404 control error."""
        found = self.live(file_id)
        if found is None:
            raise ControlError(404, f"no file {file_id!r} in account {self.id!r}")
        return found

    def path_of(self, item: FakeFile) -> str:
        """The item's path from the root, ``/a/b.txt``."""
        parts = [item.name]
        parent = item.parent_id
        for _ in range(MAX_DEPTH):
            if parent == self.root_id:
                break
            folder = self.files[parent]
            parts.append(folder.name)
            parent = folder.parent_id
        return "/" + "/".join(reversed(parts))

    def parent_path(self, item: FakeFile) -> str:
        """The path of the item's folder (``/`` for the root)."""
        return "/" if item.parent_id == self.root_id else self.path_of(self.files[item.parent_id])

    def find(self, path: str) -> FakeFile | None:
        """The live item at ``path`` (case-insensitive, as Dropbox and OneDrive compare)."""
        parent = self.root_id
        found: FakeFile | None = None
        for part in _split(path):
            file_id = self.names.get((parent, part.casefold()))
            found = self.live(file_id) if file_id else None
            if found is None:
                return None
            parent = found.id
        return found

    def live_count(self) -> int:
        """How many items are neither deleted nor trashed."""
        return sum(1 for item in self.files.values() if not item.trashed)

    def listing(self, start: int, limit: int) -> tuple[list[FakeFile], int | None]:
        """Up to ``limit`` live items in listing order from ``start``, and where to go on (None: end)."""
        out: list[FakeFile] = []
        index, end = start, len(self.order)
        while index < end and len(out) < limit:
            item = self.live(self.order[index])
            index += 1
            if item is not None:
                out.append(item)
        while index < end and self.live(self.order[index]) is None:
            index += 1
        return out, (index if index < end else None)

    def changes(self, seq: int, limit: int) -> tuple[list[Change], int]:
        """Up to ``limit`` changes logged from ``seq``, latest state per file, and the next seq."""
        out: list[Change] = []
        index, end = seq, len(self.log)
        while index < end and len(out) < limit:
            file_id, gone_path = self.log[index]
            if gone_path is not None:
                out.append(Change(file_id, None, gone_path))
            elif self.last_seq.get(file_id) == index:
                item = self.files.get(file_id)
                # Dropbox reports vanished items by path (logged separately), never by id.
                if self.provider != DROPBOX or (item is not None and not item.trashed):
                    out.append(Change(file_id, item))
            index += 1
        return out, index

    def descendants(self, file_id: str) -> Iterator[str]:
        """Ids below ``file_id``, parents before children."""
        queue = deque(self.children.get(file_id, ()))
        while queue:
            child = queue.popleft()
            yield child
            queue.extend(self.children.get(child, ()))

    # -- changing -----------------------------------------------------------------------------

    def create(
        self,
        name: str,
        parent_id: str | None = None,
        *,
        is_folder: bool = False,
        size: int = 0,
        mime_type: str | None = None,
        log: bool = True,
    ) -> FakeFile:
        """A new item under ``parent_id`` (default: the root)."""
        parent_id = parent_id or self.root_id
        self._check_folder(parent_id)
        self._check_name(parent_id, name)
        item = FakeFile(
            id=self._new_id(),
            name=name,
            parent_id=parent_id,
            is_folder=is_folder,
            size=0 if is_folder else size,
            modified=time.time(),
            mime_type=mime_type,
        )
        self._insert(item)
        if is_folder:
            self.children[item.id] = set()
        if log:
            self._log(item.id)
        return item

    def create_path(
        self,
        path: str,
        *,
        is_folder: bool = False,
        size: int = 0,
        mime_type: str | None = None,
        log: bool = True,
    ) -> FakeFile:
        """A new item at ``path``, creating missing parent folders."""
        *folders, name = _split(path) or [""]
        if not name:
            raise ControlError(400, f"bad path {path!r}")
        parent = self.root_id
        for part in folders:
            existing = self.names.get((parent, part.casefold()))
            folder = self.live(existing) if existing else None
            if folder is None:
                folder = self.create(part, parent, is_folder=True, log=log)
            elif not folder.is_folder:
                raise ControlError(409, f"{part!r} in {path!r} is a file")
            parent = folder.id
        return self.create(name, parent, is_folder=is_folder, size=size, mime_type=mime_type, log=log)

    def generate(self, files: int, folders: int, size: int) -> None:
        """Bulk initial content: ``folders`` folders under the root, ``files`` files spread over them."""
        parents = [self.create(f"folder-{i:04d}", is_folder=True, log=False).id for i in range(folders)]
        parents = parents or [self.root_id]
        now = time.time()
        for i in range(files):
            # Bypasses the per-item checks: names are unique by construction and this must be fast.
            item = FakeFile(self._new_id(), f"file-{i:06d}.dat", parents[i % len(parents)], False, size, now)
            self._insert(item)

    def relocate(self, file_id: str, *, name: str | None = None, parent_id: str | None = None) -> FakeFile:
        """Rename and/or move an item."""
        item = self.require(file_id)
        new_parent = parent_id or item.parent_id
        new_name = name or item.name
        if new_parent == item.parent_id and new_name == item.name:
            return item
        self._check_folder(new_parent)
        if new_parent == item.id or new_parent in set(self.descendants(item.id)):
            raise ControlError(409, "cannot move a folder into itself")
        if (new_parent, new_name.casefold()) != (item.parent_id, item.name.casefold()):
            self._check_name(new_parent, new_name)
        old_path = self.path_of(item)
        self._unindex(item)
        item.name, item.parent_id = new_name, new_parent
        self._index(item)
        if self.provider == DROPBOX:
            # Dropbox shows a move as the old path deleted and everything at the new path added.
            self._log(item.id, old_path)
            self._log(item.id)
            for child in self.descendants(item.id):
                self._log(child)
        else:
            self._log(item.id)
        return item

    def touch(self, file_id: str, *, size: int | None = None) -> FakeFile:
        """New content: bumps the version (so the hash), the size and the modification time."""
        item = self.require(file_id)
        if item.is_folder:
            raise ControlError(409, "folders have no content")
        item.version += 1
        item.size = size if size is not None else item.size + 1
        item.modified = time.time()
        self._log(item.id)
        return item

    def delete(self, file_id: str, *, trash: bool = False) -> None:
        """Delete an item and everything below it; ``trash`` keeps them trashed (Drive only)."""
        item = self.require(file_id)
        doomed = [item.id, *self.descendants(item.id)]
        if self.provider == DROPBOX:
            self._log(item.id, self.path_of(item))
        if trash and self.provider == GOOGLE:
            for victim in doomed:
                self.files[victim].trashed = True
                self._log(victim)
            return
        for victim in doomed:
            gone = self.files.pop(victim)
            self._unindex(gone)
            self.children.pop(victim, None)
            if self.provider != DROPBOX:
                self._log(victim)

    # -- faults and stats ---------------------------------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        """Queue a fault described by a control-API body."""
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ControlError(400, f"fault kind must be one of {sorted(FAULT_KINDS)}")
        count = spec.get("count", 1)
        fault = Fault(
            kind=kind,
            remaining=None if count is None or count == "forever" else int(count),
            endpoint=spec.get("endpoint"),
            status=int(spec.get("status", 401 if kind == "unauthorized" else 503)),
            retry_after=None if spec.get("retry_after") is None else str(spec["retry_after"]),
            hang_seconds=float(spec.get("hang_seconds", 10.0)),
            reason=spec.get("reason"),
            message=spec.get("message"),
        )
        self.faults.append(fault)
        return fault

    def take_fault(self, endpoint: str) -> Fault | None:
        """The first queued fault matching ``endpoint``, spending one of its uses."""
        for fault in self.faults:
            if fault.matches(endpoint):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def fault_list(self) -> list[dict[str, Any]]:
        """The queued faults as JSON."""
        return [asdict(fault) for fault in self.faults]

    def stats(self) -> dict[str, Any]:
        """Calls per endpoint, their total, and refresh-token grants received."""
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "refresh_grants": self.refresh_grants,
        }

    def reset_stats(self) -> None:
        """Forget the counts."""
        self.calls.clear()
        self.refresh_grants = 0

    def summary(self) -> dict[str, Any]:
        """The account as the control API shows it."""
        return {
            "id": self.id,
            "provider": self.provider,
            "email": self.email,
            "display_name": self.display_name,
            "root_id": self.root_id,
            "files": self.live_count(),
            "page_size": self.page_size,
            "token_lifetime": self.token_lifetime,
            "latency_ms": round(self.latency * 1000),
            "epoch": self.epoch,
        }

    def file_json(self, item: FakeFile) -> dict[str, Any]:
        """A file as the control API shows it."""
        return {
            "id": item.id,
            "name": item.name,
            "path": self.path_of(item),
            "parent_id": item.parent_id,
            "folder": item.is_folder,
            "size": item.size,
            "version": item.version,
            "mime_type": item.mime_type,
            "trashed": item.trashed,
        }

    # -- internals ----------------------------------------------------------------------------

    def _new_id(self) -> str:
        number = next(self._ids)
        if self.provider == DROPBOX:
            return f"id:{self.id}-{number:07d}"
        if self.provider == ONEDRIVE:
            return f"01{self.id.upper()}!{number}"
        return f"1{self.id}x{number:07d}"

    def _insert(self, item: FakeFile) -> None:
        self.files[item.id] = item
        self.order.append(item.id)
        self._index(item)

    def _index(self, item: FakeFile) -> None:
        self.children[item.parent_id].add(item.id)
        self.names[(item.parent_id, item.name.casefold())] = item.id

    def _unindex(self, item: FakeFile) -> None:
        siblings = self.children.get(item.parent_id)
        if siblings is not None:
            siblings.discard(item.id)
        key = (item.parent_id, item.name.casefold())
        if self.names.get(key) == item.id:
            del self.names[key]

    def _log(self, file_id: str, gone_path: str | None = None) -> None:
        self.last_seq[file_id] = len(self.log)
        self.log.append((file_id, gone_path))

    def _check_folder(self, folder_id: str) -> None:
        if folder_id == self.root_id:
            return
        folder = self.live(folder_id)
        if folder is None or not folder.is_folder:
            raise ControlError(404, f"no folder {folder_id!r} in account {self.id!r}")

    def _check_name(self, parent_id: str, name: str) -> None:
        if not name or "/" in name:
            raise ControlError(400, f"bad name {name!r}")
        if self.provider == GOOGLE:
            return  # Drive allows siblings of the same name
        existing = self.names.get((parent_id, name.casefold()))
        if existing is not None and self.live(existing) is not None:
            raise ControlError(409, f"{name!r} already exists in that folder")


class Store:
    """Every account and token of one fake server; ``lock`` guards all of it."""

    def __init__(self, *, page_size: int = 100, token_lifetime: float = 3600.0, latency: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (account id, expires at)
        self.refresh_tokens: dict[str, str] = {}  # token -> account id
        self.retired_refresh_tokens: dict[str, str] = {}  # rotated or revoked, kept for attribution
        self.auth_codes: dict[str, str] = {}  # authorization code -> account id
        self.default_page_size = page_size
        self.default_token_lifetime = token_lifetime
        self.latency = latency
        self.unattributed: Counter[str] = Counter()

    def create_account(
        self,
        provider: str,
        *,
        account_id: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
        page_size: int | None = None,
        token_lifetime: float | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> tuple[Account, dict[str, Any]]:
        """A new account and the token response it starts with."""
        if provider not in PROVIDERS:
            raise ControlError(400, f"provider must be one of {list(PROVIDERS)}")
        account_id = account_id or secrets.token_hex(4)
        if account_id in self.accounts:
            raise ControlError(409, f"account {account_id!r} exists")
        if not account_id.replace("-", "").replace("_", "").isalnum():
            raise ControlError(400, "account ids are letters, digits, '-' and '_'")
        for token in (access_token, refresh_token):
            if token is not None and (token in self.access_tokens or token in self.refresh_tokens):
                raise ControlError(409, "token already issued to another account")
        account = Account(
            account_id,
            provider,
            email=email or f"{account_id}@example.test",
            display_name=display_name or f"Fake {account_id}",
            page_size=page_size or self.default_page_size,
            token_lifetime=token_lifetime or self.default_token_lifetime,
        )
        self.accounts[account_id] = account
        tokens = self.issue(account, access_token=access_token, refresh_token=refresh_token or "")
        return account, tokens

    def delete_account(self, account_id: str) -> None:
        """Forget an account and every token issued to it."""
        account = self.get(account_id)
        for token in account.access_tokens:
            self.access_tokens.pop(token, None)
        for token in account.refresh_tokens:
            self.refresh_tokens.pop(token, None)
        del self.accounts[account_id]

    def get(self, account_id: str) -> Account:
        """The account or a 404 control error."""
        try:
            return self.accounts[account_id]
        except KeyError:
            raise ControlError(404, f"no account {account_id!r}") from None

    def by_access_token(self, token: str | None) -> tuple[Account | None, bool]:
        """The account a bearer token belongs to, and whether that token is still valid."""
        entry = self.access_tokens.get(token or "")
        if entry is None:
            return None, False
        account = self.accounts.get(entry[0])
        return account, account is not None and entry[1] > time.time()

    def by_refresh_token(self, token: str | None) -> Account | None:
        """The account a refresh token belongs to, if it is still valid."""
        account_id = self.refresh_tokens.get(token or "")
        return self.accounts.get(account_id) if account_id else None

    def issue(
        self, account: Account, *, access_token: str | None = None, refresh_token: str | None = None
    ) -> dict[str, Any]:
        """A token response: a new access token, and a refresh token when ``refresh_token`` is not None.

        An empty ``refresh_token`` asks for a generated one.
        """
        access_token = access_token or _token(account.provider, "access")
        self.access_tokens[access_token] = (account.id, time.time() + account.token_lifetime)
        account.access_tokens.add(access_token)
        response: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "bearer" if account.provider == DROPBOX else "Bearer",
            "expires_in": max(1, round(account.token_lifetime)),
        }
        if refresh_token is not None:
            refresh_token = refresh_token or _token(account.provider, "refresh")
            self.refresh_tokens[refresh_token] = account.id
            account.refresh_tokens.add(refresh_token)
            response["refresh_token"] = refresh_token
        return response

    def rotate(self, account: Account, old_refresh_token: str) -> str:
        """Replace a refresh token (Graph): the old one answers ``invalid_grant`` from now on."""
        if self.refresh_tokens.pop(old_refresh_token, None) is not None:
            self.retired_refresh_tokens[old_refresh_token] = account.id
        account.refresh_tokens.discard(old_refresh_token)
        new = _token(account.provider, "refresh")
        self.refresh_tokens[new] = account.id
        account.refresh_tokens.add(new)
        return new

    def expire_access_tokens(self, account: Account) -> None:
        """Make every access token of the account expired now."""
        for token in account.access_tokens:
            if token in self.access_tokens:
                self.access_tokens[token] = (account.id, 0.0)

    def revoke_refresh_tokens(self, account: Account) -> None:
        """Make every refresh token of the account answer ``invalid_grant``."""
        for token in account.refresh_tokens:
            self.refresh_tokens.pop(token, None)
            self.retired_refresh_tokens[token] = account.id
        account.refresh_tokens.clear()

    def current_tokens(self, account: Account) -> dict[str, Any]:
        """The account's valid tokens (for demos and tests that drive a client by hand)."""
        now = time.time()
        valid = [t for t in account.access_tokens if self.access_tokens.get(t, ("", 0.0))[1] > now]
        return {"access_tokens": sorted(valid), "refresh_tokens": sorted(account.refresh_tokens)}


_TOKEN_PREFIXES = {
    (GOOGLE, "access"): "ya29.fake-",
    (GOOGLE, "refresh"): "1//fake-",
    (DROPBOX, "access"): "sl.fake-",
    (DROPBOX, "refresh"): "fake-dbx-rt-",
    (ONEDRIVE, "access"): "EwB.fake-",
    (ONEDRIVE, "refresh"): "M.R3_fake-",
}


def _token(provider: str, kind: str) -> str:
    return _TOKEN_PREFIXES[(provider, kind)] + secrets.token_urlsafe(24)


def _split(path: str) -> list[str]:
    return [part for part in path.strip().split("/") if part]


def file_specs(specs: Iterable[str | dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Normalise the control API's file list: a bare string is a file path, ``/x/`` a folder."""
    for spec in specs:
        if isinstance(spec, str):
            yield {"path": spec, "folder": spec.endswith("/")}
        else:
            yield spec
