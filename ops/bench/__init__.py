"""``mwap bench``: the platform and a plain Celery baseline, measured side by side in one run.

``cli`` holds the command, ``harness`` starts and stops the processes, ``scenarios/`` the five
measurements, ``baseline`` the plain Celery app and Flask route, ``loader`` the HTTP load
process, ``replica`` the in-process replays of the platform's MongoDB paths, ``report`` the table.
"""
