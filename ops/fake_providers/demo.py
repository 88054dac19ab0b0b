"""``--seed-demo``: one small account per provider with fixed, documented tokens.

| account id     | provider     | access token          | refresh token          |
|----------------|--------------|-----------------------|------------------------|
| demo-google    | google-drive | demo-google-access    | demo-google-refresh    |
| demo-dropbox   | dropbox      | demo-dropbox-access   | demo-dropbox-refresh   |
| demo-onedrive  | onedrive     | demo-onedrive-access  | demo-onedrive-refresh  |

Access tokens live the server's token lifetime (default one hour) and then need a refresh. The
OneDrive refresh token rotates on first use, like Graph's: store the new one it returns.
"""

from ops.fake_providers.store import DROPBOX, GOOGLE, ONEDRIVE, Store

DEMO_ACCOUNTS = {
    "demo-google": GOOGLE,
    "demo-dropbox": DROPBOX,
    "demo-onedrive": ONEDRIVE,
}

DEMO_FILES = [
    "/Projects/",
    "/Projects/Alpha/brief.docx",
    "/Projects/Alpha/budget.xlsx",
    "/Projects/Alpha/assets/logo.png",
    "/Projects/Beta/notes.md",
    "/Projects/Beta/plan.pdf",
    "/Photos/2024/beach.jpg",
    "/Photos/2024/mountain.jpg",
    "/Shared/contract.pdf",
    "/readme.txt",
]


def demo_tokens(account_id: str) -> tuple[str, str]:
    """The fixed (access, refresh) tokens of a demo account."""
    return f"{account_id}-access", f"{account_id}-refresh"


def seed_demo(store: Store) -> None:
    """Create the demo accounts (idempotent within one server's life)."""
    with store.lock:
        for account_id, provider in DEMO_ACCOUNTS.items():
            if account_id in store.accounts:
                continue
            access, refresh = demo_tokens(account_id)
            account, _ = store.create_account(
                provider,
                account_id=account_id,
                email=f"{account_id}@example.test",
                display_name=f"Demo {provider}",
                access_token=access,
                refresh_token=refresh,
            )
            for number, path in enumerate(DEMO_FILES):
                account.create_path(
                    path.rstrip("/"), is_folder=path.endswith("/"), size=1000 * (number + 1), log=False
                )
