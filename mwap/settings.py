"""One settings object, read from the environment (prefix ``MWAP_``) once at process start."""

import functools
import sys
from typing import Annotated, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mwap import mongo_options, redis_urls
from mwap.crypto import KeyRing

ENV_PREFIX = "MWAP_"


class Settings(BaseSettings):
    """Every knob of the platform. Required ones have no default: the process stops without them."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # One server (redis://, rediss://) or Sentinel in kombu's format, "sentinel://[:password@]host:port
    # [/db];sentinel://host:port;..." with the master's name below (mwap/redis_urls.py, README).
    redis_url: str = Field(pattern=r"^(rediss?|sentinel)://")
    redis_sentinel_master: str | None = Field(default=None, pattern=r"^[^\s;/@]{1,128}$")
    redis_sentinel_password: SecretStr | None = None  # the sentinels' own (requirepass in sentinel.conf)
    mongo_url: str = Field(pattern=r"^mongodb(\+srv)?://")
    mongo_db: str = Field(default="mwap", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    # Key ring "kid:base64key,kid:base64key", newest first. Parsed by mwap.crypto.
    encryption_keys: Annotated[SecretStr, NoDecode]
    # The MWAP backend's ENCRYPTION_KEY: only to read its legacy iv:authTag:ciphertext values until
    # `mwap keys rotate` has rewritten them as enc:v1 (never used to encrypt). Empty counts as unset.
    legacy_encryption_key: SecretStr | None = None
    admin_api_key: SecretStr = Field(min_length=16)
    sentry_dsn: str | None = None
    # One Sentry event per cause (exception type and place) per this many seconds, per process.
    sentry_dedupe_seconds: float = Field(default=60.0, ge=0, le=86_400)
    flower_basic_auth: SecretStr | None = None
    # Workers send Celery's task events (received, started, succeeded…: three Redis PUBLISHes and
    # their serialization per job) from their start. Off, they send them only while a monitor asks:
    # Flower turns them on every few seconds while it runs, so its live view works either way.
    worker_task_events: bool = False
    # Producers also send Celery's task-sent event, so Flower lists a job from its publish rather
    # than from its delivery; each costs the enqueue a Redis PUBLISH.
    task_sent_events: bool = False
    # When set, GET /metrics needs "Authorization: Bearer <token>" (Prometheus: authorization.credentials).
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=2, ge=1, le=64)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    # API limits.
    rate_limit_per_minute: int = Field(default=100, ge=0)  # per tenant key; 0 turns limiting off
    rate_limit_burst: int = Field(default=20, ge=1)  # requests a key may make at once
    admin_rate_limit_per_minute: int = Field(default=0, ge=0)  # 0: the admin key is not limited
    # Every key of a tenant draws from one tenant budget too; unset: five times the per-key budget.
    tenant_rate_limit_per_minute: int | None = Field(default=None, ge=0)  # 0: no tenant budget
    tenant_rate_limit_burst: int | None = Field(default=None, ge=1)
    # Failed authentications per client address, checked before any MongoDB lookup; 0 turns it off.
    auth_failures_per_minute: int = Field(default=30, ge=0)
    auth_failure_burst: int = Field(default=20, ge=1)
    # Proxies in front of the API that append to X-Forwarded-For; 0: the client is REMOTE_ADDR.
    trusted_proxy_count: int = Field(default=0, ge=0, le=10)
    max_integrations_per_tenant: int = Field(default=20, ge=1, le=10_000)
    api_batch_max: int = Field(default=100, ge=1, le=1000)  # jobs per POST /v1/jobs/batch
    idempotency_ttl: int = Field(default=24 * 3600, ge=60)  # seconds a first answer is replayed
    # Redis bytes one tenant's (or the admin's) Idempotency-Key records may take; past it the
    # oldest keys are forgotten first, so one key at its rate limit cannot fill the broker.
    idempotency_tenant_bytes: int = Field(default=2_000_000, ge=64_000)
    cors_origins: str = ""  # comma-separated browser origins; empty: CORS off
    # GET /v1/jobs/{id}?wait=N holds the request until the job ends (woken through Redis) for at most
    # this many seconds, and at most this many such requests per API process wait at once (each
    # holds a server thread): past it a request answers at once. 0 waiters: ?wait is ignored.
    job_wait_max: float = Field(default=10.0, ge=0, le=25)
    job_waiters_per_process: int = Field(default=3, ge=0, le=64)
    # The operators' console (/console): a session ends after this long idle, and at the latest
    # this long after sign-in.
    console_session_idle_seconds: int = Field(default=1800, ge=60, le=86_400)
    console_session_max_seconds: int = Field(default=12 * 3600, ge=300, le=7 * 86_400)

    # Schedule intervals, seconds (seed 000's defaults: health every 15 min, a new integration
    # checked within 5 min, token refresh hourly with a look-ahead covering the interval, audit
    # cleanup daily).
    health_check_interval: int = Field(default=15 * 60, ge=1)
    new_integration_check_within: int = Field(default=5 * 60, ge=1)
    token_refresh_interval: int = Field(default=3600, ge=1)
    token_refresh_lookahead: int = Field(default=3600 + 15 * 60, ge=0)
    token_refresh_max_age: int = Field(default=24 * 3600, ge=60)
    sync_interval: int = Field(default=15 * 60, ge=1)
    usage_aggregation_interval: int = Field(default=3600, ge=1)
    retention_interval: int = Field(default=24 * 3600, ge=1)
    reconcile_interval: int = Field(default=60, ge=1)

    # Retention defaults, days.
    job_retention_days: int = Field(default=30, ge=1)
    audit_retention_days: int = Field(default=365, ge=1)

    # Job behaviour.
    tenant_max_running_jobs: int = Field(default=8, ge=1, le=1000)  # fairness across tenants
    health_unhealthy_after: int = Field(default=3, ge=1)  # consecutive failures: degraded -> unhealthy
    breaker_fail_max: int = Field(default=5, ge=1)  # provider-wide consecutive failures that open it
    breaker_reset_timeout: int = Field(default=60, ge=1)  # seconds open before a trial call
    refresh_wait: float = Field(default=10.0, gt=0)  # seconds a job waits for another's refresh
    refresh_cooldown: int = Field(default=600, ge=0)  # after a failed automatic refresh
    sync_time_budget: int = Field(default=120, ge=5)  # a sync run stops at a checkpoint after this
    dispatch_chunk_size: int = Field(default=500, ge=1, le=10_000)
    provider_connect_timeout: float = Field(default=3.05, gt=0)
    provider_read_timeout: float = Field(default=20.0, gt=0)
    provider_max_inline_wait: float = Field(default=5.0, ge=0)  # longer Retry-After: re-enqueue
    # Outbound provider calls (tasks/providers/outbound.py): https only, each provider's own hosts,
    # global addresses only. Development and tests (fake providers on loopback) turn on http and
    # private/loopback addresses; link-local and cloud metadata addresses are refused regardless.
    outbound_allow_http: bool = False
    outbound_allow_private: bool = False
    # Comma-separated hosts added to every provider's allow-list ("host") or one's ("slug=host"),
    # e.g. sovereign clouds or a self-hosted stand-in: "onedrive=graph.microsoft.us".
    outbound_extra_hosts: str = ""
    # Webhooks (mwap/webhooks.py, tasks/webhooks.py). Delivery goes through the outbound rules above
    # (https unless MWAP_OUTBOUND_ALLOW_HTTP, global addresses unless MWAP_OUTBOUND_ALLOW_PRIVATE),
    # any host. Retries wait these seconds (each with +-20% jitter), then the delivery fails.
    webhook_timeout: float = Field(default=10.0, gt=0, le=30)  # below the deliver task's 75 s bound
    webhook_retry_schedule: str = Field(
        default="5,300,1800,7200,18000,36000,36000", pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$"
    )
    webhook_disable_after_days: float = Field(default=5, gt=0)  # failing this long disables the endpoint
    webhook_sweep_interval: int = Field(default=30, ge=1)  # beat: relay outboxes, resend due deliveries
    webhook_retention_days: int = Field(default=30, ge=1)  # events and delivery attempts kept
    webhook_secret_overlap_hours: float = Field(default=24, ge=0, le=24 * 30)  # old secret still signs
    beat_lock_timeout: int = Field(default=30, ge=5)  # leader lease; a standby takes over after it
    stale_job_after: int = Field(default=600, ge=1)  # reconciler: open jobs untouched this long
    max_resends: int = Field(default=5, ge=1)  # reconciler: then the job is failed as lost
    # Dead workers (mwap/liveness.py, tasks/dead_workers.py): each worker's main process refreshes
    # a heartbeat key in Redis this often, a key that expires this long after its last refresh;
    # beat checks this often for workers whose key expired and resends the jobs they were running.
    # A killed worker's jobs run again within TTL + check interval (+ pickup): 20 s by default.
    worker_heartbeat_interval: int = Field(default=5, ge=1)
    worker_heartbeat_ttl: int = Field(default=15, ge=2)
    dead_worker_check_interval: int = Field(default=5, ge=1)

    # Task execution, seconds. The broker's visibility timeout must outlast the longest task,
    # or Redis hands a still-running job to a second worker.
    task_soft_time_limit: int = Field(default=240, ge=1)
    task_time_limit: int = Field(default=300, ge=1)
    broker_visibility_timeout: int = Field(default=900, ge=10)
    mongo_timeout_ms: int = Field(default=5000, ge=100)
    # MongoDB at scale (mwap/mongo_options.py): the write concern every write waits for, and how long
    # (then the write reports an error; it may still have been applied on the primary). A w= or
    # wtimeoutMS= in MWAP_MONGO_URL wins over the default; given both ways, the process stops.
    mongo_write_concern: str = Field(
        default="majority", pattern=r"^(majority|[1-9][0-9]?|[A-Za-z][\w-]{0,63})$"
    )
    mongo_wtimeout_ms: int = Field(default=10_000, ge=1)
    # The list endpoints' reads (GET /v1/jobs, /v1/integrations, files, usage, webhooks, deliveries)
    # may go to secondaries; a listing then trails the primary by the replication lag (at most the
    # staleness bound, >= 90 s, when set). Reads that follow a write stay on the primary.
    mongo_list_read_preference: str = Field(
        default="primary", pattern=r"^(primary|primaryPreferred|secondary|secondaryPreferred|nearest)$"
    )
    mongo_list_max_staleness_seconds: int | None = Field(default=None, ge=90)
    redis_timeout: float = Field(default=5.0, gt=0)

    @field_validator("encryption_keys")
    @classmethod
    def _key_ring_parses(cls, value: SecretStr) -> SecretStr:
        KeyRing.parse(value.get_secret_value())  # KeyRingError (a ValueError) names the bad entry
        return value

    @field_validator("redis_url")
    @classmethod
    def _sentinel_url_parses(cls, value: str) -> str:
        if redis_urls.is_sentinel(value):
            redis_urls.parse(value)  # a ValueError naming the part and the rule, never the password
        return value

    @field_validator("redis_sentinel_master", "redis_sentinel_password", mode="before")
    @classmethod
    def _empty_sentinel_setting_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose and ConfigMaps pass "" for unset

    @model_validator(mode="after")
    def _sentinel_master_named(self) -> Self:
        if redis_urls.is_sentinel(self.redis_url) and not self.redis_sentinel_master:
            raise ValueError("MWAP_REDIS_SENTINEL_MASTER is required with a sentinel:// MWAP_REDIS_URL")
        if not redis_urls.is_sentinel(self.redis_url) and (
            self.redis_sentinel_master or self.redis_sentinel_password
        ):
            # A deployment that means to use Sentinel must not silently talk to one server.
            raise ValueError("MWAP_REDIS_SENTINEL_* are set but MWAP_REDIS_URL is not a sentinel:// URL")
        return self

    @field_validator("flower_basic_auth")
    @classmethod
    def _flower_passwords_are_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        for pair in value.get_secret_value().split(","):
            user, colon, password = pair.partition(":")
            problem = weak_flower_password(user, colon, password)
            if problem:  # names the rule, never the value
                raise ValueError(f"each user:password (comma-separated) needs {problem}")
        return value

    @field_validator("legacy_encryption_key")
    @classmethod
    def _empty_legacy_key_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    def legacy_password(self) -> str | None:
        return self.legacy_encryption_key.get_secret_value() if self.legacy_encryption_key else None

    def webhook_retry_delays(self) -> list[float]:
        """The waits before each retry of a webhook delivery, seconds."""
        return [float(step) for step in self.webhook_retry_schedule.split(",")]

    def key_ring(self) -> KeyRing:
        return KeyRing.parse(self.encryption_keys.get_secret_value(), legacy_password=self.legacy_password())

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Self:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("MWAP_TASK_SOFT_TIME_LIMIT must be below MWAP_TASK_TIME_LIMIT")
        if self.broker_visibility_timeout <= self.task_time_limit:
            raise ValueError("MWAP_BROKER_VISIBILITY_TIMEOUT must exceed MWAP_TASK_TIME_LIMIT")
        if self.token_refresh_lookahead < self.token_refresh_interval:
            # A token expiring between two ticks would otherwise lapse before it is refreshed.
            raise ValueError("MWAP_TOKEN_REFRESH_LOOKAHEAD must be at least MWAP_TOKEN_REFRESH_INTERVAL")
        if self.mongo_list_max_staleness_seconds is not None and self.mongo_list_read_preference == "primary":
            raise ValueError(
                "MWAP_MONGO_LIST_MAX_STALENESS_SECONDS needs a non-primary MWAP_MONGO_LIST_READ_PREFERENCE"
            )
        mongo_options.check_url(self.mongo_url, self.model_fields_set)
        if self.worker_heartbeat_ttl < 2 * self.worker_heartbeat_interval:
            # One late refresh (a loaded host) must not make a live worker look dead.
            raise ValueError(
                "MWAP_WORKER_HEARTBEAT_TTL must be at least twice MWAP_WORKER_HEARTBEAT_INTERVAL"
            )
        return self


# Flower can revoke tasks, shut workers down and send any task: its password is not a demo value.
FLOWER_PASSWORD_MIN_CHARS = 16
FLOWER_PASSWORD_MIN_DISTINCT = 8


def weak_flower_password(user: str, colon: str, password: str) -> str | None:
    """Why a Flower ``user:password`` pair is refused, or None (``ops/run`` generates 32 random
    URL-safe characters; ``python -c "import secrets; print(secrets.token_urlsafe(18))"`` does too)."""
    if not user or not colon:
        return "a user name and a colon"
    if len(password) < FLOWER_PASSWORD_MIN_CHARS:
        return f"a password of at least {FLOWER_PASSWORD_MIN_CHARS} characters"
    if len(set(password)) < FLOWER_PASSWORD_MIN_DISTINCT:
        return f"a password of at least {FLOWER_PASSWORD_MIN_DISTINCT} distinct characters"
    if user.lower() in password.lower():
        return "a password that does not contain the user name"
    return None


class SettingsError(SystemExit):
    """Raised at start when a setting is missing or malformed; its message names the setting."""


def describe_errors(error: ValidationError) -> str:
    """One line per problem, naming the environment variable and never echoing a value."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        reason = "is required but not set" if problem["type"] == "missing" else problem["msg"]
        lines.append(f"{name}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first call."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None


def load_or_exit() -> Settings:
    """For entry points: the settings, or a message on stderr and exit status 2."""
    try:
        return get_settings()
    except SettingsError as error:
        print(f"mwap: {error}", file=sys.stderr)
        raise SystemExit(2) from None
