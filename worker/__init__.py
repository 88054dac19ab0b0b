"""The Celery side of mwap-tasks: the app factory, the job task base class and signals."""
