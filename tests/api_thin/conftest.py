"""Fixtures shared by the API tests: an API app whose jobs stay queued."""

from collections.abc import Iterator

import pytest
from api_support import forget_offline, offline_app
from flask import Flask
from flask.testing import FlaskClient

from mwap.settings import Settings


@pytest.fixture(scope="module")
def offline(settings: Settings) -> Iterator[Flask]:
    """The API app publishing to a Redis database no worker reads (one per test module)."""
    yield offline_app(settings)
    forget_offline(settings)


@pytest.fixture
def api(offline: Flask) -> FlaskClient:
    """A client whose jobs stay queued: no worker reads their broker database."""
    return offline.test_client()
