"""Last in the run: no secret of the whole session appears in a log line, a ledger document or an
audit entry. (Marked ``last``: it reads what every earlier test left behind.)"""

import json
import re

import pytest
from pymongo.database import Database

from mwap.crypto import CryptoError
from tasks.integrations import tokens_of

pytestmark = [pytest.mark.faults, pytest.mark.last]

# Every token the fake providers issue carries one of these prefixes (ops/fake_providers/store.py),
# so tokens issued by refreshes during the run are caught too, not only the ones stored now.
ISSUED = re.compile(r"(ya29\.fake-|1//fake-|sl\.fake-|fake-dbx-rt-|EwB\.fake-|M\.R3_fake-)[A-Za-z0-9_-]{8,}")
PROVIDER_SIDE = {"fake-providers.log", "mongo.log", "redis.log"}  # the provider may log its own tokens


def stored_secrets(db: Database, ring) -> set[str]:
    found = set()
    for doc in db["cloudIntegrations"].find({}, {"tenantId": 1, "authData": 1}):
        try:
            tokens = tokens_of(ring, doc)
        except CryptoError:
            continue  # the crypto tests tamper some on purpose
        found |= {tokens.access_token, tokens.refresh_token} - {""}
    return {secret for secret in found if len(secret) >= 8}


def test_no_secret_leaks_into_logs_or_documents(
    db: Database, ring, stack_env: dict[str, str], worker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secrets = stored_secrets(db, ring) | {stack_env["MWAP_ADMIN_API_KEY"]}
    if stack_env.get("MWAP_LEGACY_ENCRYPTION_KEY"):  # the backend's key is a secret too
        secrets.add(stack_env["MWAP_LEGACY_ENCRYPTION_KEY"])
    assert len(secrets) > 10  # the run stored real tokens: the check below means something
    places: dict[str, str] = {}
    # Every log any test of this session wrote: workers, gunicorn, beat, Flower, ops/run's stack.
    for path in sorted(tmp_path_factory.getbasetemp().rglob("*.log")):
        if path.name not in PROVIDER_SIDE:
            places[str(path)] = path.read_text(errors="replace")
    for collection in ("jobs", "auditLogs", "usageDaily"):
        places[collection] = "\n".join(json.dumps(doc, default=str) for doc in db[collection].find())
    assert any(places.values())
    leaks = [
        (place, secret[:6] + "…") for place, text in places.items() for secret in secrets if secret in text
    ]
    leaks += [
        (place, match.group(0)[:10] + "…")
        for place, text in places.items()
        for match in ISSUED.finditer(text)
    ]
    assert leaks == []
