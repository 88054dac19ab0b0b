"""``mwap bench``: the platform, plain Celery and Dramatiq, measured side by side in one run.

``cli`` holds the command, ``harness`` starts and stops the processes, ``scenarios/`` the five
measurements, ``meter`` the measurement windows (CPU from /proc, Redis INFO, the platform's
MongoDB command counters), ``baseline`` and ``dramatiq_peer`` the peers' apps and Flask routes,
``producer`` the bench's own enqueueing, ``loader`` the HTTP load process, ``verdicts`` the
targets (pure), ``report`` the tables, ``publish`` the committed results and the README's table.
"""
