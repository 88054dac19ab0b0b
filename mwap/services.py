"""What a job's logic needs from its process: settings, the Store over MongoDB, Redis, the key ring."""

from dataclasses import dataclass

from pymongo.database import Database
from redis import Redis

from mwap.connections import key_ring, mongo_db, redis_client
from mwap.crypto import KeyRing
from mwap.settings import Settings
from mwap.store import Document, Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    db: Database[Document]  # for the core modules that own a collection (ledger, audit, usage, ...)
    redis: Redis
    ring: KeyRing

    @property
    def store(self) -> Store:
        """Collections by tenant (``store.tenant(id)[name]``), global ones, and the one explicit
        cross-tenant door (``store.unscoped(name)``): how the layers above the core reach MongoDB."""
        return Store(self.db)


def services_for(settings: Settings) -> Services:
    """This process's Services for ``settings`` (clients cached per process in mwap.connections)."""
    return Services(settings, mongo_db(settings), redis_client(settings), key_ring(settings))
