"""Large accounts: ``changes()`` fetches one page per step, never the whole listing up front."""

from collections.abc import Callable

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import ProviderClient

LIST_ENDPOINTS = {
    "google-drive": ("google.files.list",),
    "dropbox": ("dropbox.list_folder", "dropbox.list_folder_continue"),
    "onedrive": ("graph.delta",),
}


def list_calls(fake: FakeProviders, account: FakeAccount) -> int:
    calls = fake.stats(account.id)["calls"]
    return sum(calls.get(name, 0) for name in LIST_ENDPOINTS[account.provider])


def test_twenty_thousand_files_are_listed_page_by_page(
    provider: str,
    fake: FakeProviders,
    make_account: Callable[..., FakeAccount],
    make_client: Callable[..., ProviderClient],
) -> None:
    account = make_account(provider, generate_files=20_000, generate_folders=10, page_size=1000)
    pages = make_client(account).changes(None)

    first = next(pages)

    assert len(first.items) == 1000
    assert not first.done
    assert list_calls(fake, account) == 1
    second = next(pages)
    assert list_calls(fake, account) == 2
    count, number = len(first.items) + len(second.items), 2
    for page in pages:
        count += len(page.items)
        number += 1
    assert count == 20_010
    assert list_calls(fake, account) == number == 21
