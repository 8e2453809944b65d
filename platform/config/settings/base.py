"""Settings shared by every environment. Production components are switched on by environment only."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from common.env import env_bool, env_int, env_list, env_secret, env_str
from common.security import DEFAULT_CONTENT_SECURITY_POLICY, DEFAULT_PERMISSIONS_POLICY

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(env_str("TRIBUTE_VAR_DIR", str(BASE_DIR / "var")))
# librosa's compiled (numba) functions are cached in this checkout's var/, not beside librosa in the
# virtualenv: checkouts sharing one virtualenv would otherwise compile into the same files at once, and
# numba's cache can then load a half-matched pair and crash the process (numba issue 10128).
os.environ.setdefault("NUMBA_CACHE_DIR", str(VAR_DIR / "numba-cache"))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret(
    "DJANGO_SECRET_KEY", required=not DEBUG, default="dev-only-insecure-key-do-not-deploy"
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("TRIBUTE_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

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
    "django_celery_beat",
    "accounts",
    "matching",
    "catalog",
    "dashboard",
    "royalties",
    "access",
    "studio",
    "datasets",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "common.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "common.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.ratelimits.RateLimitHeadersMiddleware",
    "accounts.security.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = env_str("DATABASE_URL")
    if url:
        config: dict[str, object] = dict(
            dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
        )
        if config["ENGINE"] == "django.db.backends.sqlite3":
            # Our SQLite backend whichever way the file is named: the ledger's guards need it.
            return _sqlite(str(config["NAME"]))
        if config["ENGINE"] == "django.db.backends.postgresql":
            # common.postgresql checks a reused connection without a round trip; the hot statements
            # (common.rows.prepared_cursor) are prepared once per connection unless a pooling proxy
            # in transaction mode rules that out (DB_PREPARED_STATEMENTS=0).
            config["ENGINE"] = "common.postgresql"
            prepared = env_bool("DB_PREPARED_STATEMENTS", True)
            options = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
            config["OPTIONS"] = {**options, "prepare_threshold": 0 if prepared else None}
        config["CONN_HEALTH_CHECKS"] = env_bool("DB_HEALTH_CHECKS", True)
        return config
    return _sqlite(env_str("SQLITE_PATH", str(VAR_DIR / "tribute.sqlite3")))


def _sqlite(path: str) -> dict[str, object]:
    # SQLite: WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so two
    # writers queue instead of failing with "database is locked" on upgrade; common.sqlite queues them on
    # a file lock (woken at once, not polled) and checkpoints the WAL outside it.
    return {
        "ENGINE": "common.sqlite",
        "NAME": path,
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000; "
                "PRAGMA foreign_keys=ON;"
            ),
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"  # after log-in, unless a safe `next` names another page
LOGOUT_REDIRECT_URL = "/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "platform" / "static"]
MEDIA_URL = "uploads/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "uploads")))

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tribute <no-reply@tribute.invalid>")

# Upload limits: checked on the declared size, on the bytes received, and on the decoded media.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 40_000_000, minimum=1)
UPLOAD_MAX_AUDIO_SECONDS = env_int("UPLOAD_MAX_AUDIO_SECONDS", 20 * 60, minimum=1)
# Text works: bytes of one file, characters of its normalised text, pages of a PDF.
TEXT_UPLOAD_MAX_BYTES = env_int("TEXT_UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
TEXT_MAX_CHARACTERS = env_int("TEXT_MAX_CHARACTERS", 5_000_000, minimum=1000)
TEXT_MAX_PDF_PAGES = env_int("TEXT_MAX_PDF_PAGES", 2_000, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# Access receipts are signed with RECEIPT_SIGNING_KEY (Ed25519 PEM); in DEBUG a development key is made here.
RECEIPT_DEV_KEY_PATH: Path | None = VAR_DIR / "keys" / "receipts-ed25519.pem" if DEBUG else None
# PostgreSQL: whether an access paid from the prepaid balance waits for its commit to reach the disk before
# it is answered (docs/access.md, "Commit durability"). Off by default, as SQLite's synchronous=NORMAL is.
ACCESS_DURABLE_COMMIT = env_bool("ACCESS_DURABLE_COMMIT", False)

# Money and licensing defaults.
PLATFORM_FEE_BPS = env_int("PLATFORM_FEE_BPS", 1000, minimum=0)
DEFAULT_CURRENCY = env_str("DEFAULT_CURRENCY", "USD")

# Studio (docs/studio.md). C2PA content credentials are signed with C2PA_SIGNING_CERT (PEM chain, signing
# certificate first) and C2PA_SIGNING_KEY (PEM); in DEBUG a development chain is made once in C2PA_DEV_DIR.
# C2PA_TRUST_ANCHORS (PEM) are the roots readers trust besides that development root.
C2PA_SIGNING_CERT = env_secret("C2PA_SIGNING_CERT", required=False)
C2PA_SIGNING_KEY = env_secret("C2PA_SIGNING_KEY", required=False)
C2PA_SIGNING_ALG = env_str("C2PA_SIGNING_ALG", "es256")
C2PA_TIMESTAMP_URL = env_str("C2PA_TIMESTAMP_URL")
C2PA_TRUST_ANCHORS = env_secret("C2PA_TRUST_ANCHORS", required=False)
C2PA_DEV_DIR: Path | None = VAR_DIR / "keys" / "c2pa" if DEBUG else None
# External generators: a JSON list of {"name", "title", "url", "parent_kind", "output_kind", "use_classes",
# "timeout_s", "max_bytes", "token"}; the territory generation accesses are made from; in DEBUG a fan may
# credit their own studio wallet (there is no card top-up yet).
STUDIO_EXTERNAL_GENERATORS = env_str("STUDIO_EXTERNAL_GENERATORS", "[]")
STUDIO_TERRITORY = env_str("STUDIO_TERRITORY", "US")
STUDIO_DEV_TOP_UP = env_bool("STUDIO_DEV_TOP_UP", DEBUG)
# A job running longer than this is taken to have lost its worker (studio.sweep_stuck_jobs closes it).
STUDIO_JOB_TIMEOUT_S = env_int("STUDIO_JOB_TIMEOUT_S", 1800, minimum=60)

# Dataset delivery (docs/datasets.md): how long a signed download link lives, records per shard, and the
# bytes at which a text (JSONL) shard closes.
DATASET_LINK_TTL_S = env_int("DATASET_LINK_TTL_S", 600, minimum=10)
DATASET_SHARD_ITEMS = env_int("DATASET_SHARD_ITEMS", 1000, minimum=1)
DATASET_TEXT_SHARD_BYTES = env_int("DATASET_TEXT_SHARD_BYTES", 64 * 1024 * 1024, minimum=1024)

# Stripe (docs/stripe.md): off while STRIPE_SECRET_KEY is empty; then fiat payouts wait as manual payouts.
# STRIPE_API_BASE points the SDK elsewhere (a local fake); empty means Stripe's own API.
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY", required=False)
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET", required=bool(STRIPE_SECRET_KEY) and not DEBUG)
# A second endpoint for events on connected accounts (account.updated) has its own secret; both are tried.
STRIPE_CONNECT_WEBHOOK_SECRET = env_secret("STRIPE_CONNECT_WEBHOOK_SECRET", required=False)
STRIPE_API_BASE = env_str("STRIPE_API_BASE").rstrip("/")
STRIPE_TIMEOUT_S = env_int("STRIPE_TIMEOUT_S", 20, minimum=1)
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2, minimum=0)
# A wallet-link challenge must be signed within this many seconds.
WALLET_CHALLENGE_TTL_S = env_int("WALLET_CHALLENGE_TTL_S", 600, minimum=30)

# Payouts (docs/payouts.md). A payee is paid once per period when their payable reaches the threshold:
# PAYOUT_THRESHOLD_MINOR="USD=1000,EUR=2000" (minor units); a currency not named needs 10 whole units.
PAYOUT_PERIOD = env_str("PAYOUT_PERIOD", "month")  # month | week | day
PAYOUT_THRESHOLD_MINOR: dict[str, int] = {
    code.strip().upper(): int(value)
    for code, _, value in (item.partition("=") for item in env_list("PAYOUT_THRESHOLD_MINOR", []))
}
# Receivables and holdbacks (docs/royalties.md). Reported revenue is a receivable until money covering it
# arrives; a sale date older than REPORT_MAX_AGE_DAYS is refused, and an open receivable is overdue after
# RECEIVABLE_DUE_DAYS. HOLDBACK_BPS of each payee's new earnings waits HOLDBACK_DAYS before it can be paid.
REPORT_MAX_AGE_DAYS = env_int("REPORT_MAX_AGE_DAYS", 400, minimum=1)
RECEIVABLE_DUE_DAYS = env_int("RECEIVABLE_DUE_DAYS", 60, minimum=1)
HOLDBACK_BPS = env_int("HOLDBACK_BPS", 0, minimum=0)
HOLDBACK_DAYS = env_int("HOLDBACK_DAYS", 30, minimum=0)
# Claims (docs/claims.md): a decided claim may be disputed (and a resolution appealed once) for
# CLAIM_DISPUTE_DAYS, then it is final and its money moves; an owner names a price (for a use the terms do
# not price) of at most CLAIM_PRICE_MAX_MINOR minor units.
CLAIM_DISPUTE_DAYS = env_int("CLAIM_DISPUTE_DAYS", 14, minimum=1)
# Partner platforms (docs/claims.md): the hosts a partner may ask us to fetch a file from (those serving it
# on this machine), and the only hosts a webhook may use plain http on.
PARTNER_LOCAL_HOSTS = env_list("PARTNER_LOCAL_HOSTS", ["127.0.0.1", "localhost", "::1"])
# An open claim its owner leaves undecided for CLAIM_DECIDE_DAYS lapses (resolved as dismissed).
CLAIM_DECIDE_DAYS = env_int("CLAIM_DECIDE_DAYS", 30, minimum=1)
CLAIM_PRICE_MAX_MINOR = env_int("CLAIM_PRICE_MAX_MINOR", 100_000, minimum=1)
if HOLDBACK_BPS > 10_000:
    raise ImproperlyConfigured("HOLDBACK_BPS is a share in basis points: at most 10000")
# Chain (docs/chain.md, docs/payouts.md): the in-process EVM unless CHAIN_RPC_URL names a node. Chain payouts
# are on with a node, or in DEBUG on the in-process chain; CHAIN_DEPOSIT_ADDRESS receives vendors' top-ups.
CHAIN_RPC_URL = env_str("CHAIN_RPC_URL")
CHAIN_PRIVATE_KEY = env_secret("CHAIN_PRIVATE_KEY", required=bool(CHAIN_RPC_URL))
CHAIN_TOKEN_ADDRESS = env_str("CHAIN_TOKEN_ADDRESS")
CHAIN_DISTRIBUTOR_ADDRESS = env_str("CHAIN_DISTRIBUTOR_ADDRESS")
CHAIN_PAYOUTS_ENABLED = env_bool("CHAIN_PAYOUTS_ENABLED", bool(CHAIN_RPC_URL) or DEBUG)
CHAIN_CONFIRMATIONS = env_int("CHAIN_CONFIRMATIONS", 3, minimum=1)
CHAIN_RESEND_AFTER_S = env_int("CHAIN_RESEND_AFTER_S", 900, minimum=0)
CHAIN_DEPOSIT_ADDRESS = env_str("CHAIN_DEPOSIT_ADDRESS")
CHAIN_FUNDING_START_BLOCK = env_int("CHAIN_FUNDING_START_BLOCK", 0, minimum=0)

# The cache: Redis when CACHE_URL names one (redis://host:port/db; shared by every worker and machine),
# else this process's memory (the embedded default: each worker process counts its own requests).
CACHE_URL = env_str("CACHE_URL")
CACHES: dict[str, dict[str, object]] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tribute"}
    ),
    # The rate-limit counters (common.cache: the same stores without the per-character key check).
    "ratelimit": (
        {"BACKEND": "common.cache.CounterRedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "rl"}
        if CACHE_URL
        else {"BACKEND": "common.cache.CounterLocMemCache", "LOCATION": "tribute-ratelimit"}
    ),
}

# Rate limits (accounts.ratelimits; docs/security.md lists them). Each is "count/period" (s, m, h, d, with
# an optional multiple: "10/15m"); several make tiers. RATE_LIMITS_ENABLED=0 switches every one off.
RATELIMIT_ENABLE = env_bool("RATE_LIMITS_ENABLED", True)
RATELIMIT_USE_CACHE = "ratelimit"
# Behind a proxy, the header whose last hop is the client's address (e.g. X-Forwarded-For); else REMOTE_ADDR.
RATELIMIT_TRUSTED_PROXY_HEADER = env_str("RATELIMIT_TRUSTED_PROXY_HEADER")
RATE_LIMITS: dict[str, str | list[str]] = {
    # failed logins per account name and per address: a slow-down, then a lockout (the last tier)
    "login_account": ["5/m", "10/h"],
    "login_ip": ["20/10m", "100/h"],
    "signup_ip": "10/h",
    # API requests per minute: per key, per organisation (all its keys), per session user, per anonymous
    # address. A metered-access key may sustain 500 requests a second (what one machine serves).
    "api_key": env_str("RATE_LIMIT_API_KEY", "30000/m"),
    "api_organisation": env_str("RATE_LIMIT_API_ORGANISATION", "60000/m"),
    "api_user": env_str("RATE_LIMIT_API_USER", "600/m"),
    "api_anonymous": env_str("RATE_LIMIT_API_ANONYMOUS", "120/m"),
    # per day, per organisation for organisation keys, else per user
    "uploads": env_str("RATE_LIMIT_UPLOADS", "500/d"),
    "traces": env_str("RATE_LIMIT_TRACES", "2000/d"),
    "outputs": env_str("RATE_LIMIT_OUTPUTS", "2000/d"),
    "invitations": env_str("RATE_LIMIT_INVITATIONS", "100/d"),
}

# Account security (accounts.security, docs/security.md): a payout-destination change or a key with the
# `access` scope needs an authenticator and a password+code confirmation within REAUTH_WINDOW_S; staff reach
# the operator pages only with an authenticator.
REAUTH_WINDOW_S = env_int("REAUTH_WINDOW_S", 600, minimum=60)
SENSITIVE_CHANGES_NEED_TWO_FACTOR = env_bool("SENSITIVE_CHANGES_NEED_TWO_FACTOR", True)
TWO_FACTOR_REQUIRED_FOR_STAFF = env_bool("TWO_FACTOR_REQUIRED_FOR_STAFF", True)
# Rotating a key keeps the old one working this long by default (at most API_KEY_ROTATION_MAX_OVERLAP_S).
API_KEY_ROTATION_OVERLAP_S = env_int("API_KEY_ROTATION_OVERLAP_S", 24 * 3600, minimum=0)
API_KEY_ROTATION_MAX_OVERLAP_S = 7 * 24 * 3600

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.KeyScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "accounts.ratelimits.ApiQuotaThrottle",
        "accounts.ratelimits.OperationQuotaThrottle",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "common.pagination.Pagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tribute API",
    "DESCRIPTION": (
        "Register works and licence terms, accept licences, register derivatives. Errors are RFC 9457 "
        "problem+json documents with a stable `code`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI from our own static files (drf-spectacular-sidecar): no CDN, and the CSP can stay 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every operation documents the problem+json errors the shared machinery can answer (common.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.schema.problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "WorkKindEnum": "catalog.models.WorkKind",
        "ClaimEventKindEnum": "catalog.models.ClaimEvent.Kind",
        "PayoutProfileRailEnum": "accounts.models.PayoutProfile.Rail",
        "PayoutRailEnum": "royalties.models.PayoutRail",
        "DatasetKindEnum": "datasets.models.DatasetKind",
        "UseClassEnum": "catalog.models.UseClass",
        "MeteredUseEnum": "access.models.METERED_USES",
        "RetrievalUseEnum": "catalog.models.RETRIEVAL_USES",
    },
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {}
    if env_str("CELERY_BROKER_URL")
    else {
        "data_folder_in": str(VAR_DIR / "celery" / "queue"),
        "data_folder_out": str(VAR_DIR / "celery" / "queue"),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
    }
)
if not env_str("CELERY_BROKER_URL"):
    for _folder in ("queue", "processed"):
        (VAR_DIR / "celery" / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "x402": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy and Permissions-Policy (common.security); docs/security.md explains each choice.
CONTENT_SECURITY_POLICY = DEFAULT_CONTENT_SECURITY_POLICY
PERMISSIONS_POLICY = DEFAULT_PERMISSIONS_POLICY
