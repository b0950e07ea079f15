"""Settings for every deployment shape, driven by the environment.

Nothing configured: SQLite, the in-memory channel layer and a Celery broker on a SQLite
file (kombu's SQLAlchemy transport) — no server to install. With DATABASE_URL and
REDIS_URL: PostgreSQL (psycopg 3) and Redis as broker, channel layer and cache.
AFFECTWATCH_ENV=production turns on the hardening that `check --deploy` asks for.
"""
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AFFECTWATCH_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# prometheus-client's multiprocess mode (apps/monitoring): every web and worker process
# writes its counters under this folder and /metrics sums them. It must be set before
# prometheus_client is imported; the launcher and platform/entrypoint.sh empty it at start.
METRICS_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")))
METRICS_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=""):
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


PRODUCTION = os.environ.get("AFFECTWATCH_ENV", "development") == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)


def _secret_key():
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when AFFECTWATCH_ENV=production")
    # Development: a random key kept on this machine, never a fixed one in the code.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "apps.accounts",
    "apps.sites",
    "apps.telemetry",
    "apps.dashboards",
    "apps.datasets",
    "apps.training",
    "apps.alerts",
    "apps.monitoring",
    "axes",  # last: its signal handlers see the apps' models
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lockout into its 429 page
    # Last, and sync-only: under ASGI Django then runs the whole chain in one worker
    # thread, instead of a thread hop for each async-capable middleware's request and
    # response hooks (ingest, one run each on the 2-core VM: 18,503 → 19,565 events/s).
    "affectwatch.middleware.RefuseNulInQuery",
]

ROOT_URLCONF = "affectwatch.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "affectwatch" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.role",
            ],
        },
    },
]
WSGI_APPLICATION = "affectwatch.wsgi.application"
ASGI_APPLICATION = "affectwatch.asgi.application"

# --- Database -------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'affectwatch.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, worker, beat and tests share one file: WAL and a busy timeout keep them from
    # tripping over each other's locks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so test servers started as subprocesses see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"{os.environ.get('AFFECTWATCH_TEST_DB', 'test-affectwatch')}.sqlite3")}
else:
    if os.environ.get("AFFECTWATCH_TEST_DB"):
        # One test database per run, so several runs on one machine never collide.
        DATABASES["default"]["TEST"] = {"NAME": os.environ["AFFECTWATCH_TEST_DB"]}
    # A connection pool per process (psycopg-pool through Django's own `pool` option):
    # opening a PostgreSQL connection per request cost ingest about half its database CPU
    # (bench-results/capacity.md). 0 opens one per request, as before.
    DB_POOL_SIZE = int(os.environ.get("AFFECTWATCH_DB_POOL_SIZE", "4"))
    if DB_POOL_SIZE:
        # Added to what DATABASE_URL's query sets (sslmode, options...), never instead of it.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": DB_POOL_SIZE,
                                                                  "timeout": 30}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, cache ----------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Keeps several deployments (or test runs) apart on one Redis: broker, channels, cache.
REDIS_KEY_PREFIX = os.environ.get("AFFECTWATCH_REDIS_PREFIX", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}affectwatch"},
        }
    }
    # django-redis keeps one connection pool per process; Django's own Redis backend opens
    # one per request under ASGI (Django ticket #35651), a new TCP connection for every
    # ingest's rate-limit check.
    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": REDIS_KEY_PREFIX}}
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
    if REDIS_KEY_PREFIX:
        CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "affectwatch_cache",
        }
    }
    CELERY_BROKER_URL = os.environ.get(
        "CELERY_BROKER_URL", f"sqla+sqlite:///{VAR_DIR / os.environ.get('AFFECTWATCH_BROKER_FILE', 'celery-broker.sqlite3')}"
    )

CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a worker that dies mid-task gives the task back
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {"apps.training.tasks.*": {"queue": "training"}}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "purge-expired-events": {"task": "apps.telemetry.tasks.purge_expired_events", "schedule": timedelta(hours=1)},
    "make-partitions": {"task": "apps.telemetry.tasks.make_partitions", "schedule": timedelta(hours=1)},
    "mark-offline-devices": {"task": "apps.sites.tasks.mark_offline_devices", "schedule": timedelta(minutes=1)},
    "fail-stale-training-jobs": {"task": "apps.training.watchdog.fail_stale_jobs", "schedule": timedelta(minutes=1)},
    # Closed minutes are noised and published (apps/telemetry/release.py); a late tick
    # is dropped, the next one releases the same minutes.
    "release-minutes": {"task": "apps.telemetry.tasks.release_minutes", "schedule": timedelta(seconds=20),
                        "options": {"expires": 15}},
    # A tick that waited past the next one (worker down) is dropped: the next one sees the same rollups.
    "evaluate-alert-rules": {"task": "apps.alerts.tasks.evaluate_alert_rules", "schedule": timedelta(minutes=1),
                             "options": {"expires": 55}},
}

# --- Auth, API ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"

# Password guessing (django-axes): after AXES_FAILURE_LIMIT failures a username is locked
# for AXES_COOLOFF_TIME from every address, and an address is locked for every username;
# a success resets the count. An admin unlocks earlier with
# `manage.py axes_reset_username NAME` (README, "Security").
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AFFECTWATCH_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AFFECTWATCH_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "dashboards:home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["apps.accounts.filters.ScopedFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "affectwatch.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "affectwatch.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "affectwatch.schema.DocumentedErrorsSchema",
    "EXCEPTION_HANDLER": "affectwatch.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Affectwatch API",
    "DESCRIPTION": "Sites, devices, emotion telemetry, data sets and models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Read-only fields a role may not see (a device's health for a safety officer) are
    # left out of the answer: the schema must not promise them.
    "COMPONENT_NO_READ_ONLY_REQUIRED": True,
    # Request bodies get components of their own, which say what a request may hold:
    # `minLength: 1` on text that may not be blank, no read-only fields.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "affectwatch.schema.forbid_nul_in_requests"],
}

# --- Product settings -----------------------------------------------------------------
AFFECTWATCH = {
    "K_ANONYMITY": int(os.environ.get("AFFECTWATCH_K_ANONYMITY", "3")),
    # Differential privacy of every published count (apps/telemetry/privacy.py): ε per
    # track and minute, the share of it spent on the distinct-track counts, and the most
    # detections one track may add to one minute (the agent emits at most one a second).
    "DP_EPSILON": float(os.environ.get("AFFECTWATCH_DP_EPSILON", "1.0")),
    "DP_TRACKS_SHARE": float(os.environ.get("AFFECTWATCH_DP_TRACKS_SHARE", "0.2")),
    "DP_MAX_DETECTIONS": int(os.environ.get("AFFECTWATCH_DP_MAX_DETECTIONS", "60")),
    # Buckets whose detections are below this many standard deviations of their noise are
    # shown as suppressed (readability, not protection: the noise protects).
    "DISPLAY_MIN_SNR": float(os.environ.get("AFFECTWATCH_DISPLAY_MIN_SNR", "2.0")),
    # An alert window needs this many standard deviations of noise in its detections, and
    # its negative share must stay above the threshold with the negative count lowered by
    # ALERT_CONFIDENCE_Z of them (bench-results/privacy.md).
    "ALERT_MIN_SNR": float(os.environ.get("AFFECTWATCH_ALERT_MIN_SNR", "4.0")),
    "ALERT_CONFIDENCE_Z": float(os.environ.get("AFFECTWATCH_ALERT_CONFIDENCE_Z", "2.0")),
    # A device's minute is released (noised and published) this long after it ends; the
    # minutes of an outage this long after the board is back (its outbox drains first).
    "RELEASE_DELAY": timedelta(seconds=int(os.environ.get("AFFECTWATCH_RELEASE_DELAY_S", "90"))),
    "RELEASE_CATCH_UP": timedelta(minutes=int(os.environ.get("AFFECTWATCH_RELEASE_CATCH_UP_MINUTES", "10"))),
    "EVENT_RETENTION_DAYS": int(os.environ.get("AFFECTWATCH_EVENT_RETENTION_DAYS", "30")),
    # Released minute rollups expire after this many days; hour and day rollups are kept
    # (apps/telemetry/downsample.py). Must exceed INGEST_MAX_PAST_DAYS.
    "MINUTE_ROLLUP_RETENTION_DAYS": int(os.environ.get("AFFECTWATCH_MINUTE_ROLLUP_RETENTION_DAYS", "90")),
    # PostgreSQL: raw events and track tallies live in one partition per UTC day, made
    # this many days ahead (apps/telemetry/partitions.py).
    "PARTITION_AHEAD_DAYS": int(os.environ.get("AFFECTWATCH_PARTITION_AHEAD_DAYS", "7")),
    "INGEST_MAX_EVENTS": int(os.environ.get("AFFECTWATCH_INGEST_MAX_EVENTS", "5000")),
    "INGEST_MAX_BYTES": int(os.environ.get("AFFECTWATCH_INGEST_MAX_BYTES", str(2 * 1024 * 1024))),
    # Bodies of other requests, and of data-set uploads (a zip plus its form), checked
    # before Django reads them (affectwatch/bodylimit.py).
    "REQUEST_MAX_BYTES": int(os.environ.get("AFFECTWATCH_REQUEST_MAX_BYTES", str(1024 * 1024))),
    "UPLOAD_MAX_BYTES": int(os.environ.get("AFFECTWATCH_IMPORT_MAX_ZIP_BYTES", str(200 * 1024 * 1024))) + 1024 * 1024,
    # Data-set zips (apps/datasets/importer.py): the upload, everything unpacked, one
    # file, and the number of entries.
    "IMPORT_MAX_ZIP_BYTES": int(os.environ.get("AFFECTWATCH_IMPORT_MAX_ZIP_BYTES", str(200 * 1024 * 1024))),
    "IMPORT_MAX_UNPACKED_BYTES": int(os.environ.get("AFFECTWATCH_IMPORT_MAX_UNPACKED_BYTES", str(1024 ** 3))),
    "IMPORT_MAX_FILE_BYTES": int(os.environ.get("AFFECTWATCH_IMPORT_MAX_FILE_BYTES", str(8 * 1024 * 1024))),
    "IMPORT_MAX_ENTRIES": int(os.environ.get("AFFECTWATCH_IMPORT_MAX_ENTRIES", "20000")),
    # Fine-tune jobs: a running job whose worker is silent this long has failed; a job
    # whose worker died is retried up to MAX_ATTEMPTS; torch threads per job (0: torch's).
    "TRAINING_STALE_AFTER": timedelta(seconds=int(os.environ.get("AFFECTWATCH_TRAINING_STALE_S", "45"))),
    "TRAINING_MAX_ATTEMPTS": int(os.environ.get("AFFECTWATCH_TRAINING_MAX_ATTEMPTS", "2")),
    "TRAINING_THREADS": int(os.environ.get("AFFECTWATCH_TRAINING_THREADS", "0")),
    "INGEST_RATE_PER_MINUTE": int(os.environ.get("AFFECTWATCH_INGEST_RATE_PER_MINUTE", "600")),
    # How long a batch waits for its board's lock (held by the board's other batch, or by
    # a delete of the board, a camera or a zone) before it is answered 429: a waiting
    # batch holds one of the process's pooled connections.
    "INGEST_LOCK_WAIT_S": float(os.environ.get("AFFECTWATCH_INGEST_LOCK_WAIT_S", "10")),
    "INGEST_MAX_PAST": timedelta(days=int(os.environ.get("AFFECTWATCH_INGEST_MAX_PAST_DAYS", "7"))),
    "INGEST_MAX_FUTURE": timedelta(minutes=5),
    "ENROLLMENT_CODE_TTL": timedelta(hours=int(os.environ.get("AFFECTWATCH_ENROLLMENT_TTL_HOURS", "24"))),
    "HEARTBEAT_INTERVAL_S": 30,
    "OFFLINE_AFTER": timedelta(minutes=3),
    # Alerts: links in notifications start with PUBLIC_URL (e.g. https://affectwatch.example.com).
    "PUBLIC_URL": os.environ.get("AFFECTWATCH_PUBLIC_URL", ""),
    # Webhooks may call private/loopback addresses only outside production (SSRF), unless allowed.
    "WEBHOOK_ALLOW_PRIVATE": env_bool("AFFECTWATCH_WEBHOOK_ALLOW_PRIVATE", not PRODUCTION),
    "WEBHOOK_TIMEOUT_S": float(os.environ.get("AFFECTWATCH_WEBHOOK_TIMEOUT_S", "10")),
    "WEBHOOK_RETRY_BASE_S": float(os.environ.get("AFFECTWATCH_WEBHOOK_RETRY_BASE_S", "30")),
    "NOTIFY_MAX_RETRIES": int(os.environ.get("AFFECTWATCH_NOTIFY_MAX_RETRIES", "6")),
    # /metrics (Prometheus) answers a scraper with `Authorization: Bearer <token>` whose
    # SHA-256 is this (the token itself is not kept), and superusers' sessions.
    "METRICS_TOKEN_SHA256": (hashlib.sha256(os.environ["AFFECTWATCH_METRICS_TOKEN"].encode()).hexdigest()
                             if os.environ.get("AFFECTWATCH_METRICS_TOKEN") else ""),
}
if 0 < len(os.environ.get("AFFECTWATCH_METRICS_TOKEN", "")) < 32:
    raise ImproperlyConfigured("AFFECTWATCH_METRICS_TOKEN must be at least 32 characters (a random string)")

if timedelta(days=AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"]) <= AFFECTWATCH["INGEST_MAX_PAST"]:
    raise ImproperlyConfigured("AFFECTWATCH_MINUTE_ROLLUP_RETENTION_DAYS must be longer than "
                               "AFFECTWATCH_INGEST_MAX_PAST_DAYS (late minutes are downsampled from minute rows)")

# --- E-mail (alert notifications) -----------------------------------------------------
# EMAIL_URL (smtp://, smtp+tls:// for STARTTLS, smtps:// for TLS; user:password@host:port)
# or EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS/SSL.
# Neither set: mails are printed by the console backend. EMAIL_BACKEND overrides.
_SMTP = "django.core.mail.backends.smtp.EmailBackend"
if os.environ.get("EMAIL_URL"):
    from urllib.parse import unquote, urlsplit

    _mail = urlsplit(os.environ["EMAIL_URL"])
    if _mail.scheme not in ("smtp", "smtp+tls", "smtps", "smtp+ssl"):
        raise ImproperlyConfigured("EMAIL_URL must start with smtp://, smtp+tls:// or smtps://")
    EMAIL_HOST = _mail.hostname or "localhost"
    EMAIL_USE_TLS = _mail.scheme == "smtp+tls"
    EMAIL_USE_SSL = _mail.scheme in ("smtps", "smtp+ssl")
    EMAIL_PORT = _mail.port or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = unquote(_mail.username or ""), unquote(_mail.password or "")
    _default_backend = _SMTP
elif os.environ.get("EMAIL_HOST"):
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS, EMAIL_USE_SSL = env_bool("EMAIL_USE_TLS"), env_bool("EMAIL_USE_SSL")
    _default_backend = _SMTP
else:
    _default_backend = "django.core.mail.backends.console.EmailBackend"
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", _default_backend)
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Affectwatch <alerts@localhost>")

# Bodies are checked against their limits before Django (affectwatch/bodylimit.py, 413);
# Django's own limit must not trip first with a less helpful 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(AFFECTWATCH["INGEST_MAX_BYTES"] * 2, 2_621_440)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"

# --- Static ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "affectwatch" / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "affectwatch.staticfinders.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Hardening ------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
