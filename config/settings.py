"""Steward settings, read from the environment (django-environ).

Defaults are the embedded set-up: SQLite under ``var/``, kombu's filesystem broker under ``var/``,
task results in the database, artifacts under ``var/artifacts/``. ``DATABASE_URL`` and
``CELERY_BROKER_URL`` switch to PostgreSQL and Redis/RabbitMQ.
"""

import datetime
import os
import secrets
import ssl
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from runners import live

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
VAR_DIR = Path(env.str("STEWARD_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
# Exists while manage.py load_demo runs; every page then says the demo is loading.
STEWARD_DEMO_LOADING_MARKER = VAR_DIR / "demo-loading"
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """The environment's key, else a dev key generated once into ``var/`` (never committed)."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# HTTPS (issue 13): each of Django's own settings read from the environment by its own name, off
# by default (the embedded set-up serves plain HTTP on localhost). docs/operations.md lists the
# production environment; `manage.py check --deploy --fail-level WARNING` passes with it.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and the Prometheus scraper reach the web tier on its plain-HTTP port inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# Behind a TLS-terminating proxy: the header it sets on HTTPS requests, "HTTP_X_FORWARDED_PROTO,https"
# (only where the proxy strips that header from clients: otherwise a client could claim HTTPS).
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER: expected 'HTTP_X_FORWARDED_PROTO,https'")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_REFERRER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "django_htmx",
    "csp",
    "health_check",
    "governance",
    "lineage",
    "runners",
    "monitoring",
    # The composing layer: management commands that drive several apps (the demo).
    "config",
]

MIDDLEWARE = [
    # First: counts and times every answer, redirects and 429s included (issue 13).
    "governance.http_metrics.HttpMetricsMiddleware",
    # Probes and pod scrapes by IP address reach /health/ and /metrics (governance.middleware).
    "governance.middleware.ProbeHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "governance.middleware.RequestIDMiddleware",
    # A page's artifact store fault (tampered, erased, store or keys down): 409/410/503, not 500.
    "governance.middleware.ArtifactErrorMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy on every response (django-csp, issue 13): scripts, styles and fonts
# from Steward's own static files only (no page has an inline script, style or event handler;
# the API docs load their start-up script from a URL of their own), images also as data: URIs
# (the charts' and Swagger UI's icons), no plugins, no <base>, forms posting to Steward only, and
# no framing but the drift check page framing its report. A view that sets its own policy keeps
# it (the evidently report: monitoring.reports.REPORT_CSP).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context.demo_loading",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'steward.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file: WAL lets readers run beside a writer, IMMEDIATE
    # takes the write lock at BEGIN so version-number allocation cannot deadlock on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so a Celery worker thread in the tests sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that takes the connection and never answers fails it after this many seconds
    # instead of holding a request (or a health check) for ever (issue 13).
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env.int("STEWARD_DB_CONNECT_TIMEOUT", default=10)
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections: opening a PostgreSQL connection per request (Django's default, 0) costs
# more than a whole registry read (benchmarks/bench_registry.py). Each web thread keeps its own for
# this many seconds; the health check (one round trip per request that uses it) replaces a
# connection the server dropped instead of failing the request. Only under gunicorn (a fixed pool of
# threads): the dev server starts a thread per request, and each would keep an idle connection
# until PostgreSQL refuses more clients, so with DEBUG or runserver the default is 0.
_DEV_SERVER = DEBUG or (len(sys.argv) > 1 and sys.argv[1] == "runserver")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("STEWARD_DB_CONN_MAX_AGE", default=0 if _DEV_SERVER else 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
# Login throttling (django-axes), for the login page and POST /api/auth/token/ alike: the
# standalone backend refuses a locked-out (username, client address) pair before ModelBackend
# checks the password. The pair, not the username alone, so nobody can lock a colleague out
# from elsewhere. The address is REMOTE_ADDR, or the client's behind STEWARD_PROXY_COUNT proxies
# (governance.lockout.client_address): behind an uncounted proxy every client shares the proxy's.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Single sign-on by OpenID Connect (issue 13; governance.oidc, the rule in governance.actions.sso):
# on when OIDC_RP_CLIENT_ID is set. mozilla-django-oidc's own setting names; the provider's
# endpoints are given one by one (the library does no discovery). Local logins keep working
# beside it, for break-glass admins.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
STEWARD_OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
if STEWARD_OIDC_ENABLED:
    OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT")
    OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT")
    AUTHENTICATION_BACKENDS.append("governance.oidc.StewardOIDCBackend")
# The ID token's "iss" must equal this (the library does not check it).
STEWARD_OIDC_ISSUER = env.str("STEWARD_OIDC_ISSUER", default="")
if STEWARD_OIDC_ENABLED and not STEWARD_OIDC_ISSUER:
    raise ImproperlyConfigured("STEWARD_OIDC_ISSUER: the identity provider's issuer, as its ID tokens say")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = env.int("OIDC_TIMEOUT", default=10)
LOGIN_REDIRECT_URL_FAILURE = "/login/"
# Which groups give which team and platform roles (JSON; the rule in governance.actions.sso).
STEWARD_OIDC_GROUPS_CLAIM = env.str("STEWARD_OIDC_GROUPS_CLAIM", default="groups")
STEWARD_OIDC_ROLE_MAP = env.str("STEWARD_OIDC_ROLE_MAP", default="")
STEWARD_OIDC_LOGIN_LABEL = env.str("STEWARD_OIDC_LOGIN_LABEL", default="Log in with single sign-on")
AXES_FAILURE_LIMIT = env.int("STEWARD_LOGIN_FAILURE_LIMIT", default=5)
# Its start-up banner ("AXES: BEGIN ...") on every manage.py command and process says nothing useful.
AXES_VERBOSE = False
# Password spraying (issue 13): an address is locked too once its failures across every username
# reach this many within the cool-off (governance.lockout.SprayAwareHandler).
AXES_HANDLER = "governance.lockout.SprayAwareHandler"
STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT", default=30)
if STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT < AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured(
        "STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT must be at least STEWARD_LOGIN_FAILURE_LIMIT"
    )
# The client's address behind STEWARD_PROXY_COUNT reverse proxies (each appends to
# X-Forwarded-For; 0: none, REMOTE_ADDR is the client). Set it to the proxies you run, never more:
# a client could otherwise choose its own address.
STEWARD_PROXY_COUNT = env.int("STEWARD_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "governance.lockout.client_address"
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("STEWARD_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "governance.lockout.lockout_response"
LOGOUT_REDIRECT_URL = "login"
# A new API token expires after this many days unless its creator picks another expiry or never.
STEWARD_API_TOKEN_DAYS = env.int("STEWARD_API_TOKEN_DAYS", default=90)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Finders serve static files without a collectstatic step, so a fresh clone runs with DEBUG off.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

ARTIFACT_ROOT = Path(env.str("STEWARD_ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts"))).resolve()
# The artifact store (issue 12, governance/storage/): empty = plain files under ARTIFACT_ROOT;
# file:///path or s3://bucket/prefix (endpoint and credentials from the standard AWS_* variables).
STEWARD_ARTIFACT_URL = env.str("STEWARD_ARTIFACT_URL", default="")
# Key-encryption keys for envelope encryption at rest: "id:base64key[,id:base64key...]", the first
# one active (wraps new data keys); or a file holding the same. Unset: artifacts are not encrypted.
STEWARD_ARTIFACT_KEYS = env.str("STEWARD_ARTIFACT_KEYS", default="")
STEWARD_ARTIFACT_KEYS_FILE = env.str("STEWARD_ARTIFACT_KEYS_FILE", default="")
# Or a key of HashiCorp Vault's transit engine (created with derived=true) wraps the data keys:
# its name and the engine's mount; VAULT_ADDR and VAULT_TOKEN as Vault's CLI reads them.
STEWARD_ARTIFACT_VAULT_KEY = env.str("STEWARD_ARTIFACT_VAULT_KEY", default="")
STEWARD_ARTIFACT_VAULT_MOUNT = env.str("STEWARD_ARTIFACT_VAULT_MOUNT", default="transit")
# Local plaintext copies of stored artifacts (managed mode), made on first read; a scratch disk.
STEWARD_ARTIFACT_CACHE = Path(
    env.str("STEWARD_ARTIFACT_CACHE", default=str(VAR_DIR / "artifact-cache"))
).resolve()
# The cold tier (issue 12, retention): a second store holding artifacts unused for a team's
# cold_after_days, gzip-compressed; file:///path or s3://bucket/prefix, empty = VAR_DIR/artifacts-cold.
STEWARD_ARTIFACT_COLD_URL = env.str("STEWARD_ARTIFACT_COLD_URL", default="")
# Uploads to S3 above this size go in parts of this size (S3's minimum part is 5 MiB).
STEWARD_S3_MULTIPART_BYTES = env.int("STEWARD_S3_MULTIPART_BYTES", default=64 * 1024 * 1024)
# Server-side folders a dataset version may be registered from by path (besides uploads).
STEWARD_IMPORT_ROOTS = [
    Path(p).resolve()
    for p in env.list(
        "STEWARD_IMPORT_ROOTS",
        default=[str(BASE_DIR / "demo_data"), str(BASE_DIR.parent / "shared" / "data")],
    )
]
# Dataset files are read in chunks (governance.datafiles.iter_frames; issue 11), so these guard the
# artifact store's disk and a check's running time, not memory: larger files are refused with a 400.
STEWARD_MAX_DATASET_BYTES = env.int("STEWARD_MAX_DATASET_BYTES", default=16 * 1024**3)
STEWARD_MAX_DATASET_ROWS = env.int("STEWARD_MAX_DATASET_ROWS", default=1_000_000_000)
# Rows per chunk when a file is streamed (registration, checks, profiles, reports): the memory bound.
STEWARD_DATA_CHUNK_ROWS = env.int("STEWARD_DATA_CHUNK_ROWS", default=250_000)
if STEWARD_DATA_CHUNK_ROWS < 1:
    raise ImproperlyConfigured("STEWARD_DATA_CHUNK_ROWS must be at least 1")
# A monitor's Parquet reference of more rows than this is profiled in parts of about this many rows
# on several workers, merged by a chord (monitoring.profiles.profile_parts); 0 turns it off.
STEWARD_PROFILE_FANOUT_ROWS = env.int("STEWARD_PROFILE_FANOUT_ROWS", default=0)
if STEWARD_PROFILE_FANOUT_ROWS < 0:
    raise ImproperlyConfigured("STEWARD_PROFILE_FANOUT_ROWS must be >= 0")
# PII scan of each new dataset version (issue 12; governance.actions.pii): at most MAX_ROWS rows
# (a sample seeded by the file's hash beyond that), failed past TIME_LIMIT seconds; rows in
# groups smaller than K_THRESHOLD over the quasi-identifiers count as at risk; sent to QUEUE.
STEWARD_PII_SCAN_MAX_ROWS = env.int("STEWARD_PII_SCAN_MAX_ROWS", default=100_000)
STEWARD_PII_SCAN_TIME_LIMIT_S = env.float("STEWARD_PII_SCAN_TIME_LIMIT_S", default=300.0)
STEWARD_PII_K_THRESHOLD = env.int("STEWARD_PII_K_THRESHOLD", default=5)
STEWARD_PII_SCAN_QUEUE = env.str("STEWARD_PII_SCAN_QUEUE", default="celery")
# The key of the keyed hash a "hash" rule writes (HMAC-SHA256; governance.actions.pii.hash_key):
# empty derives one from SECRET_KEY. Changing either changes every hash, so joins across protected
# copies made before and after the change no longer match.
STEWARD_PII_HASH_KEY = env.str("STEWARD_PII_HASH_KEY", default="")
if STEWARD_PII_SCAN_MAX_ROWS < 1 or STEWARD_PII_SCAN_TIME_LIMIT_S <= 0 or STEWARD_PII_K_THRESHOLD < 2:
    raise ImproperlyConfigured(
        "STEWARD_PII_SCAN_MAX_ROWS must be >= 1, STEWARD_PII_SCAN_TIME_LIMIT_S > 0, "
        "STEWARD_PII_K_THRESHOLD >= 2"
    )
# OpenLineage ingest (issue 10): a request body, after gunzipping, is refused (413) past this
# size; a batch holds at most this many events.
STEWARD_OPENLINEAGE_MAX_BODY_BYTES = env.int("STEWARD_OPENLINEAGE_MAX_BODY_BYTES", default=16 * 1024 * 1024)
STEWARD_OPENLINEAGE_MAX_BATCH = env.int("STEWARD_OPENLINEAGE_MAX_BATCH", default=1000)
# A model version's upload (a file, or an archive's extracted content): refused past this size.
STEWARD_MAX_MODEL_BYTES = env.int("STEWARD_MAX_MODEL_BYTES", default=2 * 1024 * 1024 * 1024)
# A running job or drift check touches its heartbeat every INTERVAL seconds, from a thread of its
# worker that beats whatever the child computes; one silent for TIMEOUT seconds lost its worker, and
# beat's stale sweeps (every STALE_SWEEP seconds, jobs and drift checks alike) send it again to run
# elsewhere. Issue 16's goal, a dead worker's job running again within 30 s: its last beat came
# before the death, so the row is stale at most TIMEOUT after it, and the next sweep follows within
# STALE_SWEEP: worst case TIMEOUT + STALE_SWEEP = 4 x 5 + 5 = 25 s, plus a delivery and the claim
# (milliseconds).
# TIMEOUT = 4 beats: a live worker is judged dead only after 3 missed beats in a row (15 s of a
# stalled database write or a paused process), so a slow epoch never looks like a death.
STEWARD_JOB_HEARTBEAT_INTERVAL_S = env.int("STEWARD_JOB_HEARTBEAT_INTERVAL_S", default=5)
STEWARD_JOB_HEARTBEAT_TIMEOUT_S = env.int(
    "STEWARD_JOB_HEARTBEAT_TIMEOUT_S", default=4 * STEWARD_JOB_HEARTBEAT_INTERVAL_S
)
STEWARD_JOB_STALE_SWEEP_S = env.int("STEWARD_JOB_STALE_SWEEP_S", default=5)
# Jobs and drift checks (issue 16). A queued row whose task never reached the broker, or reached it
# longer than REDISPATCH_AFTER seconds ago, is sent again by beat; one sent MAX_DISPATCHES times is
# failed (no worker takes its queue). A delivery finding its row running on a dead worker runs it
# again until it has been claimed MAX_ATTEMPTS times, then fails it.
STEWARD_JOB_REDISPATCH_AFTER_S = env.int("STEWARD_JOB_REDISPATCH_AFTER_S", default=300)
STEWARD_JOB_MAX_DISPATCHES = env.int("STEWARD_JOB_MAX_DISPATCHES", default=12)
STEWARD_JOB_MAX_ATTEMPTS = env.int("STEWARD_JOB_MAX_ATTEMPTS", default=3)
# Per-job limits (issue 16): a spec's "limits" may ask for less or more than the default, up to the
# maximum (a team's entry in STEWARD_JOB_TEAM_LIMITS, JSON {"team-slug": {"memory_mb": ...}},
# replaces the platform's maximum for that team). Soft wall time 0: none by default. A cancelled or
# over-limit job's process group gets SIGTERM, then SIGKILL after KILL_GRACE seconds.
STEWARD_JOB_WALL_TIME_S = env.int("STEWARD_JOB_WALL_TIME_S", default=24 * 3600)
STEWARD_JOB_MAX_WALL_TIME_S = env.int("STEWARD_JOB_MAX_WALL_TIME_S", default=7 * 24 * 3600)
STEWARD_JOB_SOFT_WALL_TIME_S = env.int("STEWARD_JOB_SOFT_WALL_TIME_S", default=0)
STEWARD_JOB_MEMORY_MB = env.int("STEWARD_JOB_MEMORY_MB", default=8192)
STEWARD_JOB_MAX_MEMORY_MB = env.int("STEWARD_JOB_MAX_MEMORY_MB", default=65536)
STEWARD_JOB_THREADS = env.int("STEWARD_JOB_THREADS", default=min(4, os.cpu_count() or 1))
STEWARD_JOB_MAX_THREADS = env.int("STEWARD_JOB_MAX_THREADS", default=os.cpu_count() or 1)
STEWARD_JOB_TEAM_LIMITS = env.json("STEWARD_JOB_TEAM_LIMITS", default={})
STEWARD_JOB_KILL_GRACE_S = env.float("STEWARD_JOB_KILL_GRACE_S", default=2.0)
# Resource classes (issue 16): what a job may ask for. Each names the Celery queue its jobs go to
# (workers started for it consume that queue: `celery -A config worker -Q gpu`), the GPUs a job of
# the class may use, its price per hour of wall time in STEWARD_CURRENCY (accounting and budgets)
# and the backend that runs it (local: a child of the worker; ray: a Ray cluster, see
# STEWARD_RAY_ADDRESS). The "cpu" class goes to Celery's default queue, so a plain worker runs it.
STEWARD_RESOURCE_CLASSES = env.json(
    "STEWARD_RESOURCE_CLASSES",
    default={
        "cpu": {"queue": env.str("STEWARD_JOB_QUEUE", default="celery"), "gpus": 0, "price_per_hour": 0.10},
        "gpu": {"queue": "gpu", "gpus": 1, "price_per_hour": 2.50},
        "gpu-2": {"queue": "gpu-2", "gpus": 2, "price_per_hour": 5.00},
        "gpu-4": {"queue": "gpu-4", "gpus": 4, "price_per_hour": 10.00},
    },
)
STEWARD_DEFAULT_RESOURCE_CLASS = env.str("STEWARD_DEFAULT_RESOURCE_CLASS", default="cpu")
# This worker's GPU slot: the CUDA devices (indices or UUIDs, comma-separated) its jobs may use;
# a job asking for N GPUs sees the first N (CUDA_VISIBLE_DEVICES), a CPU job none. Set it on each
# worker started for a GPU class's queue: `STEWARD_WORKER_GPUS=0,1 celery ... -Q gpu-2`.
STEWARD_WORKER_GPUS = env.str("STEWARD_WORKER_GPUS", default="")
STEWARD_CURRENCY = env.str("STEWARD_CURRENCY", default="USD")
# Storage in the cost roll-up (issue 12): price of a GiB-month of artifacts per tier, in
# STEWARD_CURRENCY (defaults near object storage's list prices: a standard and an archive class).
STEWARD_STORAGE_PRICE_PER_GIB_MONTH = {
    "hot": env.float("STEWARD_STORAGE_PRICE_HOT_GIB_MONTH", default=0.023),
    "cold": env.float("STEWARD_STORAGE_PRICE_COLD_GIB_MONTH", default=0.004),
}
# The Ray cluster the "ray" backend submits to (its dashboard/Jobs API address); empty: none.
STEWARD_RAY_ADDRESS = env.str("STEWARD_RAY_ADDRESS", default="")
# Kubernetes (issue 16): GET /api/jobs/<id>/kubernetes-manifest/ renders a job as a batch/v1 Job
# (a Kubeflow PyTorchJob past one GPU) running IMAGE in NAMESPACE, artifacts on the PVC
# ARTIFACTS_CLAIM mounted where STEWARD_ARTIFACT_ROOT is, at most GPUS_PER_NODE GPUs per pod.
# Steward does not submit it: a spec's "backend": "kubernetes" is refused unless SUBMIT is on, and
# then the job is left queued, never sent to Celery, for the deployment's own submitter to run.
STEWARD_KUBERNETES_SUBMIT = env.bool("STEWARD_KUBERNETES_SUBMIT", default=False)
STEWARD_KUBERNETES_IMAGE = env.str("STEWARD_KUBERNETES_IMAGE", default="steward:latest")
STEWARD_KUBERNETES_NAMESPACE = env.str("STEWARD_KUBERNETES_NAMESPACE", default="steward")
STEWARD_KUBERNETES_ARTIFACTS_CLAIM = env.str(
    "STEWARD_KUBERNETES_ARTIFACTS_CLAIM", default="steward-artifacts"
)
STEWARD_KUBERNETES_GPUS_PER_NODE = env.int("STEWARD_KUBERNETES_GPUS_PER_NODE", default=8)
# Workloads (issue 17). Code runs (a team's own code versions) reach Steward's MLflow API at
# STEWARD_API_URL with a token scoped to the run; a code version is an uploaded archive (at most
# CODE_MAX_BYTES) or a directory under one of STEWARD_CODE_ROOTS (the shipped templates are).
STEWARD_API_URL = env.str("STEWARD_API_URL", default="http://127.0.0.1:8000")
STEWARD_CODE_ROOTS = [
    Path(root).resolve()
    for root in env.list("STEWARD_CODE_ROOTS", default=[str(BASE_DIR / "runners" / "workloads")])
]
STEWARD_CODE_MAX_BYTES = env.int("STEWARD_CODE_MAX_BYTES", default=50 * 2**20)
# The shipped templates: each folder here is one (``source=template`` code versions).
STEWARD_CODE_TEMPLATES_DIR = BASE_DIR / "runners" / "workloads"
# A job's whole log (stdout and stderr of its code, Steward's own lines) is kept up to this size.
STEWARD_JOB_LOG_MAX_BYTES = env.int("STEWARD_JOB_LOG_MAX_BYTES", default=10 * 2**20)
# A code run's output and home folders live on the worker's disk: at most this many bytes and
# entries (files and folders), checked every poll; over either, the run is stopped and fails.
STEWARD_CODE_OUTPUT_MAX_BYTES = env.int("STEWARD_CODE_OUTPUT_MAX_BYTES", default=10 * 2**30)
STEWARD_CODE_OUTPUT_MAX_FILES = env.int("STEWARD_CODE_OUTPUT_MAX_FILES", default=10_000)
# How often a running code run's live telemetry is written (runners.live): its buffered log lines
# and its templates' metric batches. Parsed there, not by env.float: that drops every character
# but digits, "," "." "-" ("1e3" read as 13 s) and names no variable when it then fails.
try:
    STEWARD_LIVE_FLUSH_S = live.parse_flush_s(env.str(live.VARIABLE, default=live.DEFAULT))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# How user code is confined: "bwrap" (bubblewrap: own mount, PID, IPC and network namespaces,
# uid 65534, only its inputs, output and temporary folders, network only to STEWARD_API_URL),
# "none" (a clean environment and its own process group only; docs/operations.md says what then
# holds), or "auto" (bwrap when the host allows it).
STEWARD_SANDBOX = env.str("STEWARD_SANDBOX", default="auto")
STEWARD_SANDBOX_UID = env.int("STEWARD_SANDBOX_UID", default=65534)
# Online prediction: the share of requests logged as Prediction rows (1.0: every one).
STEWARD_PREDICTION_LOG_SAMPLE = env.float("STEWARD_PREDICTION_LOG_SAMPLE", default=1.0)
# At most this many rows per predict request (413 past it).
STEWARD_PREDICT_MAX_ROWS = env.int("STEWARD_PREDICT_MAX_ROWS", default=1000)
# Late labels (issue 11): at most this many rows per delivery (JSON body or uploaded file).
STEWARD_LABELS_MAX_ROWS = env.int("STEWARD_LABELS_MAX_ROWS", default=100_000)
# Model servers (flavors whose loading runs code): their sockets, locks and logs live in this
# folder (a short path: a unix socket's is at most 107 bytes); each stops after this many idle
# seconds, computes with this many threads and may take this long to load its model.
STEWARD_MODEL_SERVER_DIR = Path(env.str("STEWARD_MODEL_SERVER_DIR", default=str(VAR_DIR / "model-servers")))
STEWARD_MODEL_SERVER_IDLE_S = env.float("STEWARD_MODEL_SERVER_IDLE_S", default=900.0)
STEWARD_MODEL_SERVER_THREADS = env.int("STEWARD_MODEL_SERVER_THREADS", default=1)
STEWARD_MODEL_SERVER_START_TIMEOUT_S = env.float("STEWARD_MODEL_SERVER_START_TIMEOUT_S", default=120.0)
# Ed25519 key signing audit checkpoints: a PEM in the environment, else this file, generated
# (mode 0600) on first use. Keep it out of backups of the database it vouches for.
STEWARD_AUDIT_SIGNING_KEY = env.str("STEWARD_AUDIT_SIGNING_KEY", default="", multiline=True)
STEWARD_AUDIT_SIGNING_KEY_FILE = env.str(
    "STEWARD_AUDIT_SIGNING_KEY_FILE", default=str(VAR_DIR / "audit_signing_key.pem")
)
STEWARD_AUDIT_SEQUENCE_INTERVAL_S = env.float("STEWARD_AUDIT_SEQUENCE_INTERVAL_S", default=10.0)
# /health/ reports the sequencer as failing when an audit event has waited longer than this for
# its leaf (config.health; beat runs the sequencer every STEWARD_AUDIT_SEQUENCE_INTERVAL_S).
STEWARD_HEALTH_SEQUENCER_LAG_S = env.float(
    "STEWARD_HEALTH_SEQUENCER_LAG_S", default=max(60.0, 6 * STEWARD_AUDIT_SEQUENCE_INTERVAL_S)
)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
# Seconds an SMTP connection may wait (Django's default waits for ever): a request that sends mail,
# a password-reset link, must answer even when the mail server hangs.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="steward@localhost")
STEWARD_BASE_URL = env.str("STEWARD_BASE_URL", default="http://127.0.0.1:8000")
# /metrics answers a Prometheus scraper holding this bearer token (and platform admins and
# compliance officers logged in); empty: no scraper may read it. See docs/operations.md.
STEWARD_METRICS_TOKEN = env.str("STEWARD_METRICS_TOKEN", default="")
# manage.py grafana_sync: the Grafana to provision and the Prometheus it should read.
STEWARD_GRAFANA_URL = env.str("STEWARD_GRAFANA_URL", default="http://127.0.0.1:3000")
STEWARD_GRAFANA_TOKEN = env.str("STEWARD_GRAFANA_TOKEN", default="")
STEWARD_PROMETHEUS_URL = env.str("STEWARD_PROMETHEUS_URL", default="http://127.0.0.1:9090")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "broker" / "queue"
    _control_dir = VAR_DIR / "broker" / "control"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _control_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
# Encryption in transit to the broker (issue 12): a rediss:// or amqps:// URL is TLS, and the
# broker's certificate is verified (CERT_REQUIRED) against the system's CAs or the one in
# STEWARD_BROKER_CA_FILE. Redis (redis-py) and RabbitMQ (py-amqp) name the same options differently.
STEWARD_BROKER_CA_FILE = env.str("STEWARD_BROKER_CA_FILE", default="")
CELERY_BROKER_USE_SSL: dict[str, object] | bool = False  # Celery's default: plain TCP
if CELERY_BROKER_URL.startswith("rediss://"):
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if STEWARD_BROKER_CA_FILE:
        CELERY_BROKER_USE_SSL["ssl_ca_certs"] = STEWARD_BROKER_CA_FILE
elif CELERY_BROKER_URL.startswith("amqps://"):
    CELERY_BROKER_USE_SSL = {"cert_reqs": ssl.CERT_REQUIRED}
    if STEWARD_BROKER_CA_FILE:
        CELERY_BROKER_USE_SSL["ca_certs"] = STEWARD_BROKER_CA_FILE
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The Job row is the source of truth; late acks + reject on worker loss mean a killed worker's
# task is redelivered; the task then leaves a job running on a live worker (fresh heartbeat) alone
# and runs one whose worker died again, up to STEWARD_JOB_MAX_ATTEMPTS (runners.lifecycle).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Bounded publish retries: a broker outage leaves the job queued with its dispatch_error within
# seconds, not a hang; beat's redispatch sends it once the broker is back (issue 16).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
CELERY_BROKER_CONNECTION_TIMEOUT = 4
# No static route for runners.tasks.run_job: each job is sent to its resource class's queue
# (STEWARD_RESOURCE_CLASSES; runners.actions.job_queue). Drift checks use the default queue.
# Drift checks (issue 11). A check past TIME_LIMIT seconds fails with the reason (checked between its
# stages, on any pool); Celery's hard limit (below) kills one stuck inside a stage, and the stale
# sweep then runs it again or fails it. The evidently report is a separate task after the verdict:
# on a seeded sample of at most REPORT_MAX_ROWS rows per side, in a child process killed past
# REPORT_TIME_LIMIT seconds (the report fails, the check stands); REPORT_ENABLED=false turns it off.
STEWARD_DRIFT_CHECK_TIME_LIMIT_S = env.float("STEWARD_DRIFT_CHECK_TIME_LIMIT_S", default=600.0)
STEWARD_DRIFT_REPORT_ENABLED = env.bool("STEWARD_DRIFT_REPORT_ENABLED", default=True)
STEWARD_DRIFT_REPORT_MAX_ROWS = env.int("STEWARD_DRIFT_REPORT_MAX_ROWS", default=50_000)
STEWARD_DRIFT_REPORT_TIME_LIMIT_S = env.float("STEWARD_DRIFT_REPORT_TIME_LIMIT_S", default=300.0)
# Multivariate drift tests of one check, together (issue 11): past it they report "time_limit".
STEWARD_MULTIVARIATE_TIME_LIMIT_S = env.float("STEWARD_MULTIVARIATE_TIME_LIMIT_S", default=120.0)
if STEWARD_MULTIVARIATE_TIME_LIMIT_S <= 0:
    raise ImproperlyConfigured("STEWARD_MULTIVARIATE_TIME_LIMIT_S must be > 0")
if STEWARD_DRIFT_CHECK_TIME_LIMIT_S <= 0 or STEWARD_DRIFT_REPORT_TIME_LIMIT_S <= 0:
    raise ImproperlyConfigured("STEWARD_DRIFT_CHECK_TIME_LIMIT_S and _REPORT_TIME_LIMIT_S must be > 0")
if STEWARD_DRIFT_REPORT_MAX_ROWS < 1:
    raise ImproperlyConfigured("STEWARD_DRIFT_REPORT_MAX_ROWS must be at least 1")
CELERY_TASK_ANNOTATIONS = {
    "monitoring.tasks.run_drift_check": {"time_limit": STEWARD_DRIFT_CHECK_TIME_LIMIT_S + 60},
    "monitoring.tasks.build_drift_report": {"time_limit": STEWARD_DRIFT_REPORT_TIME_LIMIT_S + 120},
    # The scan checks its own limit between columns; this kills one stuck inside a column.
    "governance.tasks.scan_dataset_version_pii": {"time_limit": STEWARD_PII_SCAN_TIME_LIMIT_S + 60},
}
# django-celery-beat's database scheduler, sending only while it holds the beat lock (config.beat):
# a second beat process stands by instead of sending every periodic task twice (issue 13).
CELERY_BEAT_SCHEDULER = "config.beat:LeaderScheduler"
# Each entry's last run is saved after every task sent (not every 3 minutes): a beat taking over
# from one that died reads it, and does not send again what the other just sent.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_BEAT_SCHEDULE = {
    # A job or drift check whose worker died runs again elsewhere (see STEWARD_JOB_STALE_SWEEP_S):
    # one indexed query per sweep when nothing is stale.
    "fail-stale-jobs": {
        "task": "runners.tasks.fail_stale_jobs",
        "schedule": float(STEWARD_JOB_STALE_SWEEP_S),
        "options": {"expires": float(STEWARD_JOB_STALE_SWEEP_S)},
    },
    # Re-sends queued jobs and checks that have no live delivery (a broker outage, a lost message).
    "redispatch-queued-jobs": {
        "task": "runners.tasks.redispatch_queued_jobs",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    # A drift check's worker that died mid-check: its check runs again, or fails on its last attempt.
    "recover-stale-drift-checks": {
        "task": "monitoring.tasks.recover_stale_drift_checks",
        "schedule": float(STEWARD_JOB_STALE_SWEEP_S),
        "options": {"expires": float(STEWARD_JOB_STALE_SWEEP_S)},
    },
    "redispatch-queued-drift-checks": {
        "task": "monitoring.tasks.redispatch_queued_drift_checks",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    # Claims due alert escalations and retries failed deliveries (monitoring.notify).
    "escalate-alerts": {
        "task": "monitoring.tasks.escalate_alerts",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Alerts a team's owners when its job cost passes its budget, once a month (issue 16).
    "check-budgets": {
        "task": "monitoring.tasks.check_budgets",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Emails approvers each pending promotion request once (issue 14); also enqueued per request.
    "notify-approvers": {
        "task": "governance.tasks.notify_approvers",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Teams' retention policies (issue 12): cold moves and deletions, once a day; idempotent.
    "apply-retention": {
        "task": "governance.tasks.apply_retention",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600.0},
    },
    # The stored bytes of tracked runs' files a later upload replaced (issue 12), once a day.
    "collect-run-artifacts": {
        "task": "runners.tasks.collect_run_artifacts",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600.0},
    },
    # Expires before the next run is due, so a busy worker never runs a backlog of them.
    "sequence-audit-events": {
        "task": "governance.tasks.sequence_audit_events",
        "schedule": STEWARD_AUDIT_SEQUENCE_INTERVAL_S,
        "options": {"expires": STEWARD_AUDIT_SEQUENCE_INTERVAL_S},
    },
}
CELERY_TIMEZONE = TIME_ZONE
# The OpenLineage emit task (issue 10) is sent by name; the worker imports its module here.
CELERY_IMPORTS = ["lineage.openlineage.tasks"]

# OpenLineage emit (issue 10): Steward's jobs and drift checks send RunEvents through the
# openlineage-python client, which reads its own standard environment (OPENLINEAGE_URL,
# OPENLINEAGE_CONFIG, OPENLINEAGE__TRANSPORT__*, OPENLINEAGE_DISABLED); none set: nothing is
# emitted. The job namespace of the events, and the Celery retries of a send (backoff doubles).
STEWARD_OPENLINEAGE_NAMESPACE = env.str("STEWARD_OPENLINEAGE_NAMESPACE", default="steward")
STEWARD_OPENLINEAGE_MAX_RETRIES = env.int("STEWARD_OPENLINEAGE_MAX_RETRIES", default=6)
STEWARD_OPENLINEAGE_RETRY_BACKOFF_S = env.float("STEWARD_OPENLINEAGE_RETRY_BACKOFF_S", default=10.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so unauthenticated requests get 401 with its WWW-Authenticate: Bearer.
        "governance.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "governance.api.pagination.KeysetCursorPagination",
    "PAGE_SIZE": 50,
    # drf-spectacular, with the 400/401/403/404 answers each operation can give (issue 13).
    "DEFAULT_SCHEMA_CLASS": "governance.api.schema.StewardAutoSchema",
    "EXCEPTION_HANDLER": "governance.api.exceptions.exception_handler",
    # ?format= is a filter on dataset versions (csv/parquet), not DRF's renderer switch.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Steward API",
    "DESCRIPTION": "Registry, RBAC, audit log, lineage, jobs and drift monitoring for AI workloads.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Team and platform roles are both "role" fields: name their enums apart.
    "ENUM_NAME_OVERRIDES": {
        "TeamRoleEnum": "governance.models.TeamRole",
        "PlatformRoleEnum": "governance.models.PlatformRole",
        # Channels, notifications and alert history each have a "kind" field too.
        "ChannelKindEnum": "monitoring.models.ChannelKind",
        "AlertEventKindEnum": "monitoring.models.AlertEventKind",
        "JobKindEnum": "runners.models.JobKind",
        # Dataset versions have a "source" too (upload, path).
        "CodeSourceEnum": "runners.models.CodeSource",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
