"""WSGI entry point for gunicorn: ``gunicorn api_thin.wsgi:app``."""

from api_thin import create_app

app = create_app()
