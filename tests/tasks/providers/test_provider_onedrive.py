"""OneDrive (Graph) client against the fake: delta paging, 410 resync, rotating refresh tokens."""

from collections.abc import Callable
from dataclasses import replace

import pytest

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import OneDriveClient, ProviderClient, ReauthRequired
from tasks.providers.cursors import Cursor

type MakeAccount = Callable[..., FakeAccount]
type MakeClient = Callable[..., ProviderClient]
type Expected = Callable[[FakeAccount], dict[str, str]]

FILES = ["/Docs/a b.txt", "/Docs/b.txt", "/Docs/Deep/c.txt", "/Photos/1.jpg", "/top.txt"]


@pytest.fixture
def account(make_account: MakeAccount) -> FakeAccount:
    return make_account("onedrive", files=FILES, page_size=3)


def by_path(fake: FakeProviders, account: FakeAccount) -> dict[str, str]:
    return {entry["path"]: entry["id"] for entry in fake.files(account.id)}


def test_first_sync_lists_every_item_over_several_pages(
    account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    pages = mirror.sync(make_client(account))

    assert len(pages) == 3
    assert pages[-1].done
    assert mirror.names() == expected_names(account)  # the root item itself is not listed
    items = {item.path: item for item in mirror.items.values()}
    assert "/Docs/a b.txt" in items  # parentReference.path, percent-decoded
    text = items["/Docs/Deep/c.txt"]
    assert text.parent_id == items["/Docs/Deep"].provider_file_id
    assert text.content_hash is not None
    assert len(text.content_hash) == 40  # sha1Hash
    assert text.mime_type == "application/octet-stream"
    assert text.etag
    assert text.web_url


def test_incremental_sync_sees_adds_renames_moves_and_deletions(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.add_file(account.id, "/Docs/new.txt", size=10)
    fake.rename(account.id, ids["/Docs/b.txt"], "b2.txt")
    fake.move(account.id, ids["/top.txt"], ids["/Photos"])
    fake.delete_file(account.id, ids["/Docs/Deep"])

    pages = mirror.sync(make_client(account))

    deletions = {file_id for page in pages for file_id in page.deletions}
    assert deletions == {ids["/Docs/Deep"], ids["/Docs/Deep/c.txt"]}
    assert mirror.names() == expected_names(account)
    assert mirror.items[ids["/top.txt"]].path == "/Photos/top.txt"


def test_410_restarts_from_location_flagged_reset(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.delete_file(account.id, ids["/top.txt"])
    fake.reset_cursors(account.id)
    fake.reset_stats(account.id)

    pages = mirror.sync(make_client(account))

    assert all(page.reset for page in pages)
    assert mirror.names() == expected_names(account)
    assert fake.stats(account.id)["calls"]["graph.delta"] == 1 + len(pages)


def test_a_cursor_for_another_host_is_void_not_followed(
    account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    stored = Cursor.decode(mirror.cursor, "onedrive")
    foreign = replace(stored, token="https://evil.example/v1.0/me/drive/root/delta?token=1.0").encode()

    pages = list(make_client(account).changes(foreign))

    assert all(page.reset for page in pages)


def test_refresh_rotates_and_the_old_refresh_token_then_fails(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account)

    tokens = client.refresh()

    assert isinstance(client, OneDriveClient)
    assert tokens.refresh_token != account.refresh_token
    assert tokens.scope
    with pytest.raises(ReauthRequired):
        make_client(account).refresh()  # a client still holding the old refresh token
    client.refresh()  # the new one works, and rotates again
    assert fake.stats(account.id)["refresh_grants"] == 3
