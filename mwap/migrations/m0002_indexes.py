"""The platform's index set (mwap/indexes.py): seed 000's indexes, the platform's own, the job types'.

``up`` creates every missing index (what ``mwap db init`` did before migrations); ``down`` drops
every index of the set (and a collection left empty without an index). The set follows the code: ``reconcile`` runs after every ``migrate`` and
creates an index added since (a new job type's due index) or adjusts a changed TTL, so adding an
index needs no migration of its own — changing an existing one's keys does (MongoDB refuses a
different definition under an existing name).
"""

from mwap import indexes
from mwap.migrations.context import Run


def up(run: Run) -> None:
    if run.dry_run:
        missing = indexes.missing_indexes(run.db, run.settings)
        run.count("indexes to create", len(missing))
        run.note("indexes to create", missing)
        return
    run.check_lock()
    created = indexes.ensure_indexes(run.db, run.settings)
    run.count("indexes created", len(created))
    run.note("created", created)


def down(run: Run) -> None:
    present = {name: set(run.db[name].index_information()) for name in run.db.list_collection_names()}
    collections = set()
    for index in indexes.indexes(run.settings):
        if index.name in present.get(index.collection, set()):
            run.check_lock()
            run.db[index.collection].drop_index(index.name)
            run.count("indexes dropped")
            collections.add(index.collection)
    # ``up`` made the collections of a set's indexes; one left empty with no other index is as if
    # it had never been made (MongoDB makes it again on the first write).
    for name in sorted(collections):
        if (
            set(run.db[name].index_information()) == {"_id_"}
            and run.db[name].count_documents({}, limit=1) == 0
        ):
            run.db.drop_collection(name)
            run.count("empty collections dropped")


def reconcile(run: Run) -> None:
    up(run)
