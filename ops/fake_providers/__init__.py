"""Fake Google Drive, Dropbox and Microsoft Graph for local runs, tests and benchmarks.

One threaded loopback HTTP server serves all three under path prefixes. Run it with
``python -m ops.fake_providers --host 127.0.0.1 --port N [--seed-demo]``; it prints
``ready http://127.0.0.1:N`` once listening and exits cleanly on SIGTERM or SIGINT.

Base URLs per provider (``{base}`` = ``http://host:port``; ``provider_documents(base)`` returns
the ``cloudProviders`` documents with exactly these):

| slug         | authUrl                          | tokenUrl                     | metadata.apiBaseUrl |
|--------------|----------------------------------|------------------------------|---------------------|
| google-drive | {base}/google/auth               | {base}/google/token          | {base}/google       |
| dropbox      | {base}/dropbox/oauth2/authorize  | {base}/dropbox/oauth2/token  | {base}/dropbox      |
| onedrive     | {base}/graph/authorize           | {base}/graph/token           | {base}/graph        |

API endpoints (stats and fault names in brackets):

- Drive: ``GET /google/drive/v3/about`` [google.about], ``/files`` [google.files.list],
  ``/files/{id}`` (``root`` too) [google.files.get], ``/changes/startPageToken``
  [google.changes.start], ``/changes`` [google.changes.list]
- Dropbox: ``POST /dropbox/2/users/get_current_account`` [dropbox.account],
  ``/2/files/list_folder`` [dropbox.list_folder], ``/2/files/list_folder/continue``
  [dropbox.list_folder_continue]
- Graph: ``GET /graph/v1.0/me/drive`` [graph.drive], ``/v1.0/me/drive/root/delta`` [graph.delta]
- Token endpoints [google.token, dropbox.token, graph.token]; authorize [*.authorize]

The control API (``/_control``) is described in ``control_api.py`` and wrapped by
``control.FakeProviders``; demo accounts and their tokens are listed in ``demo.py``.
"""

from ops.fake_providers.documents import CLIENT_CREDENTIALS, provider_documents

__all__ = ["CLIENT_CREDENTIALS", "provider_documents"]
