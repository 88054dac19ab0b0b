"""Google Drive client against the fake: listings, change feeds, void page tokens, refresh."""

from collections.abc import Callable

import pytest

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import CursorReset, GoogleDriveClient, ProviderClient, RateLimited, RetryPolicy

type MakeAccount = Callable[..., FakeAccount]
type MakeClient = Callable[..., ProviderClient]
type Expected = Callable[[FakeAccount], dict[str, str]]

FILES = [
    "/docs/",
    "/docs/a.txt",
    "/docs/b.txt",
    "/docs/deep/c.txt",
    "/photos/1.jpg",
    "/photos/2.jpg",
    "/top.txt",
]


@pytest.fixture
def account(make_account: MakeAccount) -> FakeAccount:
    return make_account("google-drive", files=FILES, page_size=3)


def by_path(fake: FakeProviders, account: FakeAccount) -> dict[str, str]:
    return {entry["path"]: entry["id"] for entry in fake.files(account.id)}


def test_first_sync_lists_every_item_over_several_pages(
    account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    client = make_client(account)

    pages = mirror.sync(client)

    assert len(pages) == 3  # 9 items (the folders were created on the way), 3 per page
    assert [page.done for page in pages] == [False, False, True]
    assert not any(page.reset for page in pages)
    assert mirror.names() == expected_names(account)
    items = {item.path: item for item in mirror.items.values()}
    assert set(items) == {
        "/docs",
        "/docs/a.txt",
        "/docs/b.txt",
        "/docs/deep",
        "/docs/deep/c.txt",
        "/photos",
        "/photos/1.jpg",
        "/photos/2.jpg",
        "/top.txt",
    }
    folder, text = items["/docs"], items["/docs/a.txt"]
    assert folder.is_folder
    assert folder.mime_type == "application/vnd.google-apps.folder"
    assert not text.is_folder
    assert text.parent_id == folder.provider_file_id
    assert text.size == 0
    assert text.content_hash
    assert text.modified_at is not None
    assert text.modified_at.tzinfo is not None


def test_incremental_sync_sees_adds_renames_moves_and_deletions(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.add_file(account.id, "/docs/new.txt", size=10)
    fake.rename(account.id, ids["/docs/a.txt"], "a-renamed.txt")
    fake.move(account.id, ids["/top.txt"], ids["/photos"])
    fake.delete_file(account.id, ids["/docs/deep"])  # and c.txt below it
    fake.delete_file(account.id, ids["/photos/1.jpg"], trash=True)
    fake.modify(account.id, ids["/docs/b.txt"], size=99)

    pages = mirror.sync(make_client(account))  # a later job: a fresh client from the stored cursor

    assert pages[-1].done
    assert not any(page.reset for page in pages)
    deletions = {file_id for page in pages for file_id in page.deletions}
    assert deletions == {ids["/docs/deep"], ids["/docs/deep/c.txt"], ids["/photos/1.jpg"]}
    assert mirror.names() == expected_names(account)
    assert mirror.items[ids["/top.txt"]].parent_id == ids["/photos"]
    assert mirror.items[ids["/docs/b.txt"]].size == 99


def test_nothing_changed_is_one_empty_page(account: FakeAccount, make_client: MakeClient, mirror) -> None:
    mirror.sync(make_client(account))
    cursor = mirror.cursor

    pages = mirror.sync(make_client(account))

    assert [(page.items, page.deletions, page.done) for page in pages] == [((), (), True)]
    assert mirror.cursor == cursor


def test_paths_need_the_folders_seen_in_the_same_run(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.add_file(account.id, "/docs/later.txt")

    pages = mirror.sync(make_client(account))

    (item,) = [item for page in pages for item in page.items]
    assert item.path is None  # "docs" was not part of this run: documented limitation
    assert item.parent_id == ids["/docs"]


def test_a_checkpointed_listing_resumes_where_it_stopped(
    account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    first = next(iter(make_client(account).changes(None)))
    mirror.apply(first)

    rest = mirror.sync(make_client(account))

    assert len(rest) == 2
    assert mirror.names() == expected_names(account)


def test_rejected_page_token_restarts_a_full_listing_flagged_reset(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.sync(make_client(account))
    ids = by_path(fake, account)
    fake.delete_file(account.id, ids["/top.txt"])
    fake.reset_cursors(account.id)
    fake.reset_stats(account.id)

    pages = mirror.sync(make_client(account))

    assert all(page.reset for page in pages)
    assert pages[-1].done
    assert mirror.names() == expected_names(account)  # top.txt dropped as "not seen"
    calls = fake.stats(account.id)["calls"]
    assert calls["google.changes.list"] == 1  # the rejected one
    assert calls["google.changes.start"] == 1


def test_a_void_token_in_the_middle_of_a_listing_restarts_it(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror, expected_names: Expected
) -> None:
    mirror.apply(next(iter(make_client(account).changes(None))))
    fake.reset_cursors(account.id)

    pages = mirror.sync(make_client(account))

    assert all(page.reset for page in pages)
    assert sum(len(page.items) for page in pages) == len(expected_names(account))


def test_a_resumed_relisting_stays_flagged_reset(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    fake.reset_cursors(account.id)
    first = next(iter(make_client(account).changes(mirror.cursor)))
    assert first.reset
    assert not first.done

    rest = list(make_client(account).changes(first.next_cursor))

    assert all(page.reset for page in rest)
    assert rest[-1].done


def test_a_second_void_cursor_in_one_run_is_surfaced(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, mirror
) -> None:
    mirror.sync(make_client(account))
    fake.reset_cursors(account.id)
    pages = make_client(account).changes(mirror.cursor)
    assert next(pages).reset
    fake.reset_cursors(account.id)

    with pytest.raises(CursorReset):
        next(pages)


def test_an_unreadable_cursor_is_treated_as_void(account: FakeAccount, make_client: MakeClient) -> None:
    pages = list(make_client(account).changes("not a cursor"))

    assert all(page.reset for page in pages)
    assert pages[-1].done


@pytest.mark.parametrize("reason", ["userRateLimitExceeded", "rateLimitExceeded"])
def test_403_rate_limit_reasons_are_throttles(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float], reason: str
) -> None:
    fake.fault(account.id, "drive_rate_limit", reason=reason)
    client = make_client(account)

    client.account()

    assert len(sleeps) == 1


def test_403_rate_limit_that_persists_raises_rate_limited(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "drive_rate_limit", reason="rateLimitExceeded", count=None)
    client = make_client(account, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))

    with pytest.raises(RateLimited) as caught:
        client.account()

    assert caught.value.status == 403


def test_refresh_keeps_the_refresh_token(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account)

    tokens = client.refresh()

    assert tokens.refresh_token == account.refresh_token
    assert tokens.access_token != account.access_token
    assert tokens.scope
    assert client.tokens == tokens
    assert isinstance(client, GoogleDriveClient)
    client.refresh()  # still valid: Google does not rotate
    assert fake.stats(account.id)["refresh_grants"] == 2
