"""Secrets still in the MWAP backend's legacy iv:authTag:ciphertext format rewritten as enc:v1.

The conversion is ``mwap keys rotate``'s (``mwap.rotation.rotate_documents`` with ``legacy_only``):
each legacy value is decrypted with ``MWAP_LEGACY_ENCRYPTION_KEY`` and sealed under the ring's
newest key, bound to its document and field, by a conditional bulk write per batch (a token
refreshed meanwhile wins). Values under an older ring key are left to ``mwap keys rotate``. A legacy
value that cannot be read (no legacy key, a wrong one) stops the migration at its batch, naming
the secrets: set the key and rerun, which resumes at that batch (the values already converted
have left the scan).

``down`` is a no-op on purpose: the legacy format derives one key *and one nonce* from the
password for every value (see ``mwap.crypto``), so writing it again would re-create the
nonce-reused ciphertext this migration exists to remove; and the platform only ever writes
``enc:v1``, which every build that knows this migration reads.
"""

from mwap import rotation
from mwap.crypto import SECRETS, is_legacy
from mwap.migrations.context import MigrationError, Run

# The legacy shape's prefix (lowercase hex iv and tag): narrows the scan to documents holding one.
_LEGACY_PREFIX = "^[0-9a-f]{32}:[0-9a-f]{32}:"
_SHOWN = 5


def up(run: Run) -> None:
    for collection, secrets in SECRETS.items():
        query = {"$or": [{secret.path: {"$regex": _LEGACY_PREFIX}} for secret in secrets]}
        projection = rotation.projection_of(collection)
        for batch in run.batches(collection, query, key=collection, projection=projection):
            if run.dry_run:
                values = [rotation.get_path(doc, secret.path) for doc in batch for secret in secrets]
                run.count(f"{collection} legacy secrets", sum(is_legacy(value) for value in values))
                continue
            report = rotation.RotationReport()
            rotation.rotate_documents(run.db, run.ring, collection, batch, report, legacy_only=True)
            run.count(f"{collection} legacy secrets converted", report.legacy_converted)
            if report.failures:
                # Raised before the checkpoint passes this batch: the rerun starts here again.
                _fail(report.failures)


def _fail(failures: list[dict[str, str]]) -> None:
    shown = "; ".join(f"{f['collection']}/{f['id']}/{f['field']}: {f['error']}" for f in failures[:_SHOWN])
    more = len(failures) - _SHOWN
    raise MigrationError(
        f"{len(failures)} legacy secrets could not be converted ({shown}"
        + (f"; and {more} more in this batch" if more > 0 else "")
        + "); set MWAP_LEGACY_ENCRYPTION_KEY to the MWAP backend's ENCRYPTION_KEY and rerun"
    )


def down(run: Run) -> None:
    """Nothing to undo: see the module docstring."""
