"""Worker and beat entry point: ``celery -A worker.entry:celery_app worker``."""

from mwap.settings import load_or_exit
from worker.app import create_celery_app

celery_app = create_celery_app(load_or_exit())
