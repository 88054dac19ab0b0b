"""A Python client for the fake providers' control API (tests, demo seeding, benchmarks)."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from ops.fake_providers.documents import provider_documents

CONTROL_TIMEOUT = (3.05, 60.0)  # generous read timeout: creating 100,000 files takes a moment


class FakeControlError(RuntimeError):
    """The control API refused a request; ``status`` and the server's message are kept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True, slots=True)
class FakeAccount:
    """An account created on the fake, with the tokens it was issued."""

    id: str
    provider: str
    email: str
    root_id: str
    access_token: str
    refresh_token: str
    expires_in: int


class FakeProviders:
    """Steers one fake server: accounts, files, faults, stats and settings."""

    def __init__(self, base_url: str, *, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        self._owns_session = session is None

    def close(self) -> None:
        """Close the HTTP session if this client made it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> "FakeProviders":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server -------------------------------------------------------------------------------

    def provider_documents(self) -> list[dict[str, Any]]:
        """The ``cloudProviders`` documents pointing at this server."""
        return provider_documents(self.base_url)

    def document(self, slug: str) -> dict[str, Any]:
        """The ``cloudProviders`` document of one provider."""
        return next(doc for doc in self.provider_documents() if doc["slug"] == slug)

    def health(self) -> dict[str, Any]:
        """``{"ok": true, ...}`` when the server answers."""
        return self._request("GET", "/_control/health")

    def settings(self, **changes: float | None) -> dict[str, Any]:
        """Read, or with ``latency_ms``/``page_size``/``token_lifetime``, change the global settings."""
        body = {key: value for key, value in changes.items() if value is not None}
        return self._request("PUT" if body else "GET", "/_control/settings", json=body or None)

    def set_latency(self, latency_ms: float) -> None:
        """Latency added to every provider call of every account."""
        self.settings(latency_ms=latency_ms)

    # -- accounts -----------------------------------------------------------------------------

    def create_account(
        self,
        provider: str,
        *,
        files: Iterable[str | dict[str, Any]] = (),
        generate_files: int = 0,
        generate_folders: int = 0,
        file_size: int = 1024,
        account_id: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        page_size: int | None = None,
        token_lifetime: float | None = None,
        latency_ms: float | None = None,
    ) -> FakeAccount:
        """A new account of ``provider`` (a ``cloudProviders`` slug).

        ``files`` are paths (``"/a/b.txt"``; a trailing ``/`` makes a folder) or dicts with
        ``path``, ``folder``, ``size``, ``mime_type``; ``generate_files`` adds that many files
        spread over ``generate_folders`` folders, cheaply.
        """
        body: dict[str, Any] = {
            "provider": provider,
            "id": account_id,
            "email": email,
            "display_name": display_name,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "page_size": page_size,
            "token_lifetime": token_lifetime,
            "latency_ms": latency_ms,
            "files": list(files),
        }
        if generate_files or generate_folders:
            body["generate"] = {"files": generate_files, "folders": generate_folders, "size": file_size}
        data = self._request(
            "POST", "/_control/accounts", json={k: v for k, v in body.items() if v is not None}
        )
        tokens = data["tokens"]
        return FakeAccount(
            id=data["id"],
            provider=data["provider"],
            email=data["email"],
            root_id=data["root_id"],
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            expires_in=int(tokens["expires_in"]),
        )

    def account(self, account_id: str) -> dict[str, Any]:
        """The account summary (file count, page size, latency, epoch...)."""
        return self._request("GET", self._account_path(account_id))

    def update_account(
        self,
        account_id: str,
        *,
        page_size: int | None = None,
        token_lifetime: float | None = None,
        latency_ms: float | None = None,
    ) -> dict[str, Any]:
        """Change an account's page size, token lifetime or latency."""
        body = {"page_size": page_size, "token_lifetime": token_lifetime, "latency_ms": latency_ms}
        return self._request("PATCH", self._account_path(account_id), json=body)

    def delete_account(self, account_id: str) -> None:
        """Forget the account and its tokens."""
        self._request("DELETE", self._account_path(account_id))

    # -- files --------------------------------------------------------------------------------

    def files(self, account_id: str, *, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Live files (``id``, ``name``, ``path``, ``parent_id``, ``folder``, ``size``, ``version``)."""
        path = f"{self._account_path(account_id)}/files"
        return self._request("GET", path, params={"offset": offset, "limit": limit})["files"]

    def file(self, account_id: str, file_id: str) -> dict[str, Any]:
        """One file."""
        return self._request("GET", self._file_path(account_id, file_id))

    def add_file(
        self,
        account_id: str,
        path: str | None = None,
        *,
        name: str | None = None,
        parent_id: str | None = None,
        folder: bool = False,
        size: int = 0,
        mime_type: str | None = None,
    ) -> dict[str, Any]:
        """Add a file or folder by ``path`` (parents created) or by ``name`` under ``parent_id``."""
        body = {
            "path": path,
            "name": name,
            "parent_id": parent_id,
            "folder": folder,
            "size": size,
            "mime_type": mime_type,
        }
        return self._request("POST", f"{self._account_path(account_id)}/files", json=body)

    def rename(self, account_id: str, file_id: str, name: str) -> dict[str, Any]:
        """Rename an item."""
        return self._request("PATCH", self._file_path(account_id, file_id), json={"name": name})

    def move(
        self, account_id: str, file_id: str, parent_id: str, *, name: str | None = None
    ) -> dict[str, Any]:
        """Move an item under another folder (the account's ``root_id`` for the top level)."""
        body = {"parent_id": parent_id, "name": name}
        return self._request("PATCH", self._file_path(account_id, file_id), json=body)

    def modify(self, account_id: str, file_id: str, *, size: int | None = None) -> dict[str, Any]:
        """New content: a new version (so a new hash), size and modification time."""
        body = {"touch": True, "size": size}
        return self._request("PATCH", self._file_path(account_id, file_id), json=body)

    def delete_file(self, account_id: str, file_id: str, *, trash: bool = False) -> None:
        """Delete an item and its subtree (``trash``: Drive's trash instead)."""
        params = {"trash": "1"} if trash else None
        self._request("DELETE", self._file_path(account_id, file_id), params=params)

    # -- faults, tokens, stats ----------------------------------------------------------------

    def fault(
        self,
        account_id: str,
        kind: str,
        *,
        count: int | None = 1,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after: str | float | None = None,
        hang_seconds: float | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> list[dict[str, Any]]:
        """Queue a fault for the next ``count`` matching calls (None: until cleared).

        ``kind``: ``status`` (with ``status`` and ``retry_after``), ``timeout`` (hang
        ``hang_seconds``), ``unauthorized`` (401), ``invalid_grant`` (token endpoint),
        ``drive_rate_limit`` (403 with ``reason``). ``endpoint`` is a glob over endpoint names
        such as ``google.files.list`` or ``*.token``.
        """
        spec: dict[str, Any] = {"kind": kind, "count": count}
        optional = {
            "endpoint": endpoint,
            "status": status,
            "retry_after": retry_after,
            "hang_seconds": hang_seconds,
            "reason": reason,
            "message": message,
        }
        spec |= {key: value for key, value in optional.items() if value is not None}
        return self._request("POST", f"{self._account_path(account_id)}/faults", json=spec)["faults"]

    def clear_faults(self, account_id: str) -> None:
        """Drop every queued fault and the account's latency."""
        self._request("DELETE", f"{self._account_path(account_id)}/faults")

    def set_account_latency(self, account_id: str, latency_ms: float) -> None:
        """Latency added to every provider call of one account."""
        self.update_account(account_id, latency_ms=latency_ms)

    def reset_cursors(self, account_id: str) -> None:
        """Void every cursor and page token issued so far (Dropbox ``reset``, Graph 410, Drive 400)."""
        self._request("POST", f"{self._account_path(account_id)}/cursor-reset")

    def expire_access_tokens(self, account_id: str) -> None:
        """Expire the account's access tokens now."""
        self._request("POST", f"{self._account_path(account_id)}/tokens/expire")

    def revoke_refresh_tokens(self, account_id: str) -> None:
        """Revoke the account's refresh tokens (``invalid_grant`` from then on)."""
        self._request("POST", f"{self._account_path(account_id)}/tokens/revoke")

    def tokens(self, account_id: str) -> dict[str, list[str]]:
        """Currently valid ``access_tokens`` and ``refresh_tokens``."""
        return self._request("GET", f"{self._account_path(account_id)}/tokens")

    def stats(self, account_id: str) -> dict[str, Any]:
        """``{"calls": {endpoint: n}, "total": n, "refresh_grants": n}``."""
        return self._request("GET", f"{self._account_path(account_id)}/stats")

    def reset_stats(self, account_id: str) -> None:
        """Zero the account's counters."""
        self._request("DELETE", f"{self._account_path(account_id)}/stats")

    # -- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def _account_path(account_id: str) -> str:
        return f"/_control/accounts/{quote(account_id, safe='')}"

    def _file_path(self, account_id: str, file_id: str) -> str:
        return f"{self._account_path(account_id)}/files/{quote(file_id, safe='')}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._session.request(method, self.base_url + path, timeout=CONTROL_TIMEOUT, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise FakeControlError(response.status_code, str(message))
        return response.json() if response.content else None
