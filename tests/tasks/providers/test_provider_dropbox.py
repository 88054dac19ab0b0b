"""Dropbox client against the fake: recursive listings, continue cursors, reset, refresh."""

from collections.abc import Callable

import pytest

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import DropboxClient, ProviderClient, ProviderRequestError

type MakeAccount = Callable[..., FakeAccount]
type MakeClient = Callable[..., ProviderClient]
type Expected = Callable[[FakeAccount], dict[str, str]]

FILES = ["/Docs/a.txt", "/Docs/b.txt", "/Docs/Deep/c.txt", "/Photos/1.jpg", "/top.txt"]


@pytest.fixture
def account(make_account: MakeAccount) -> FakeAccount:
    return make_account("dropbox", files=FILES, page_size=3)


def by_path(fake: FakeProviders, account: FakeAccount) -> dict[str, str]:
    return {entry["path"]: entry["id"] for entry in fake.files(account.id)}


def test_first_sync_lists_every_item_over_several_pages(
    account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    pages = mirror.sync(make_client(account))

    assert len(pages) == 3  # 8 items, 3 per page
    assert [page.done for page in pages] == [False, False, True]
    assert mirror.names() == expected_names(account)
    items = {item.path: item for item in mirror.items.values()}
    assert set(items) == {
        "/Docs",
        "/Docs/a.txt",
        "/Docs/b.txt",
        "/Docs/Deep",
        "/Docs/Deep/c.txt",
        "/Photos",
        "/Photos/1.jpg",
        "/top.txt",
    }
    text = items["/Docs/a.txt"]
    assert items["/Docs"].is_folder
    assert text.provider_file_id.startswith("id:")
    assert text.parent_id is None  # Dropbox metadata has no parent id
    assert text.content_hash is not None
    assert len(text.content_hash) == 64
    assert text.etag  # the rev
    assert text.modified_at is not None


def test_incremental_sync_sees_adds_renames_moves_and_deletions(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.add_file(account.id, "/Docs/new.txt", size=10)
    fake.rename(account.id, ids["/Docs/a.txt"], "a-renamed.txt")
    fake.move(account.id, ids["/top.txt"], ids["/Photos"])
    fake.delete_file(account.id, ids["/Docs/Deep"])
    fake.modify(account.id, ids["/Docs/b.txt"], size=7)

    pages = mirror.sync(make_client(account))

    deleted = {path for page in pages for path in page.deleted_paths}
    assert deleted == {"/docs/a.txt", "/top.txt", "/docs/deep"}  # by path, lower case; subtree implied
    assert not any(page.deletions for page in pages)
    assert mirror.names() == expected_names(account)
    assert mirror.items[ids["/top.txt"]].path == "/Photos/top.txt"
    assert mirror.items[ids["/Docs/b.txt"]].size == 7


def test_renaming_a_folder_relists_what_is_below_it(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.rename(account.id, ids["/Docs"], "Documents")

    mirror.sync(make_client(account))

    assert sorted(
        item.path or "" for item in mirror.items.values() if (item.path or "").startswith("/Documents")
    ) == [
        "/Documents",
        "/Documents/Deep",
        "/Documents/Deep/c.txt",
        "/Documents/a.txt",
        "/Documents/b.txt",
    ]
    assert not any((item.path or "").startswith("/Docs/") for item in mirror.items.values())


def test_reset_409_restarts_a_full_listing_flagged_reset(
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
    calls = fake.stats(account.id)["calls"]
    assert calls["dropbox.list_folder"] == 1
    assert calls["dropbox.list_folder_continue"] == len(pages)  # the 409 plus the relisting's pages


def test_a_resumed_relisting_stays_flagged_until_done(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    fake.reset_cursors(account.id)
    first = next(iter(make_client(account).changes(mirror.cursor)))

    rest = list(make_client(account).changes(first.next_cursor))

    assert all(page.reset for page in [first, *rest])
    after = list(make_client(account).changes(rest[-1].next_cursor))
    assert not any(page.reset for page in after)


def test_refresh_keeps_the_refresh_token(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account)

    tokens = client.refresh()

    assert isinstance(client, DropboxClient)
    assert tokens.refresh_token == account.refresh_token
    assert tokens.access_token != account.access_token
    client.refresh()
    assert fake.stats(account.id)["refresh_grants"] == 2


def test_409_other_than_reset_is_a_request_error(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "status", status=409, reason="path")

    with pytest.raises(ProviderRequestError, match="path") as caught:
        list(make_client(account).changes(None))

    assert caught.value.code == "path"
