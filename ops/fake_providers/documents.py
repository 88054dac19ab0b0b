"""The ``cloudProviders`` documents and OAuth client credentials of the fake providers."""

from typing import Any

from ops.fake_providers.store import DROPBOX, GOOGLE, ONEDRIVE

# Fixed so a demo or a test can register the providers without asking the server.
CLIENT_CREDENTIALS: dict[str, tuple[str, str]] = {
    GOOGLE: ("fake-google-client-id", "fake-google-client-secret"),
    DROPBOX: ("fake-dropbox-app-key", "fake-dropbox-app-secret"),
    ONEDRIVE: ("fake-graph-client-id", "fake-graph-client-secret"),
}

SCOPES: dict[str, list[str]] = {
    GOOGLE: ["https://www.googleapis.com/auth/drive.metadata.readonly"],
    DROPBOX: ["account_info.read", "files.metadata.read"],
    ONEDRIVE: ["offline_access", "Files.Read", "User.Read"],
}

# provider -> (name, path prefix, authorize path, token path)
LAYOUT: dict[str, tuple[str, str, str, str]] = {
    GOOGLE: ("Google Drive", "/google", "/google/auth", "/google/token"),
    DROPBOX: ("Dropbox", "/dropbox", "/dropbox/oauth2/authorize", "/dropbox/oauth2/token"),
    ONEDRIVE: ("OneDrive", "/graph", "/graph/authorize", "/graph/token"),
}


def provider_documents(base_url: str) -> list[dict[str, Any]]:
    """The three ``cloudProviders`` documents pointing at the fake server at ``base_url``."""
    base = base_url.rstrip("/")
    documents = []
    for slug, (name, prefix, authorize, token) in LAYOUT.items():
        client_id, client_secret = CLIENT_CREDENTIALS[slug]
        documents.append(
            {
                "slug": slug,
                "name": name,
                "authUrl": base + authorize,
                "tokenUrl": base + token,
                "clientId": client_id,
                "clientSecret": client_secret,
                "scopes": list(SCOPES[slug]),
                "metadata": {"apiBaseUrl": base + prefix},
            }
        )
    return documents
