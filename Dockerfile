# One image for every service of the stack: api, worker, beat and flower differ only in command.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The locked dependencies first, hash-checked, in their own layer: a code change does not reinstall them.
COPY requirements/prod.lock ./requirements/prod.lock
RUN pip install --require-hashes -r requirements/prod.lock

COPY pyproject.toml README.md ./
COPY mwap ./mwap
COPY worker ./worker
COPY tasks ./tasks
COPY api_thin ./api_thin
COPY mwap_cli ./mwap_cli
# The project alone: every dependency is already installed from the lock.
# /var/lib/flower: Flower's state file (compose mounts a named volume there, which takes this
# directory's owner when it is first created).
RUN pip install --no-deps . && useradd --system --uid 10001 --home /app mwap \
    && install -d -o mwap -g mwap -m 0700 /var/lib/flower

USER mwap
EXPOSE 8000 5555
CMD ["gunicorn", "-c", "python:api_thin.gunicorn_conf", "api_thin.wsgi:app"]
