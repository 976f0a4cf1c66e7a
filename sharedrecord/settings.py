"""Settings for the shared care record, driven only by environment variables.

Development defaults point at the local PostgreSQL and Redis; `make run` and
`make test` resolve (and if need be start) those services before Django loads,
see sharedrecord/localservices.py. Production values come from the deployment's
environment (deploy/README.md); none of them is defaulted to something unsafe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from celery.schedules import crontab

from sharedrecord.env import env_bool, env_int, env_list, env_secret, env_str
from sharedrecord.smart import smart_scopes

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_secret("SECRET_KEY")
# Keys that seal credentials kept in the database (sharedrecord/sealing.py): Fernet keys,
# comma-separated, the first sealing and each opening. Unset, one is derived from SECRET_KEY.
SEALING_KEYS = (
    env_secret("SEALING_KEYS").split(",")
    if (os.environ.get("SEALING_KEYS") or os.environ.get("SEALING_KEYS_FILE"))
    else []
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default="localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/sharedrecord"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

INSTALLED_APPS = [
    "sharedrecord.apps.AuditedAdminConfig",  # django.contrib.admin, every change audited
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "guardian",
    "pgtrigger",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "oauth2_provider",
    "audit",
    "sharedrecord",
    "sharedrecord.notifications",
    "optout",
    "ingestion",
]

MIDDLEWARE = [
    # Request counts and latencies by view name, method and status (never a path).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "sharedrecord.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "sharedrecord.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "sharedrecord.sessions.SessionRenewalMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Read traffic on the streaming replica where the rules allow (DATABASE_REPLICA_URL).
    "sharedrecord.dbrouter.ReplicaReadsMiddleware",
    # request.user.is_verified(): whether this session passed a one-time code.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "sharedrecord.middleware.NoStoreMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into our lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "sharedrecord.urls"
WSGI_APPLICATION = "sharedrecord.wsgi.application"
ASGI_APPLICATION = "sharedrecord.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "sharedrecord" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sharedrecord.context_processors.session_timeout",
                "sharedrecord.context_processors.launch",
            ],
        },
    },
]

# PostgreSQL only. Connections come from psycopg's pool (one per process),
# because opening a connection per request costs about ten times the
# throughput on these machines (shared/PITFALLS.md).
DATABASE_URL = env_str("DATABASE_URL", DEFAULT_DATABASE_URL)
_database: dict[str, Any] = dict(dj_database_url.parse(DATABASE_URL))
if _database.get("ENGINE") != "django.db.backends.postgresql":
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database.")
_database["CONN_MAX_AGE"] = 0
# The pool checks a connection before lending it: after a PostgreSQL restart the
# first requests would otherwise get a dead connection and answer 500 (fault suite).
_database["CONN_HEALTH_CHECKS"] = True
_database["OPTIONS"] = {
    **_database.get("OPTIONS", {}),
    "pool": {
        "min_size": env_int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env_int("DB_POOL_MAX_SIZE", default=8),
        "timeout": env_int("DB_POOL_TIMEOUT_SECONDS", default=10),
    },
}
DATABASES = {"default": _database}
# A streaming replica for read traffic (sharedrecord/dbrouter.py): record pages, the
# FHIR API and governance reads use it while its replay lag is at most
# REPLICA_MAX_LAG_SECONDS; writes, audit events and read-after-write stay on the
# primary, and a session that wrote stays there for REPLICA_STICKY_SECONDS.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    _replica: dict[str, Any] = {**_database, **dj_database_url.parse(DATABASE_REPLICA_URL)}
    _replica["OPTIONS"] = {**_database["OPTIONS"], **_replica.get("OPTIONS", {})}
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["sharedrecord.dbrouter.ReplicaRouter"]
REPLICA_MAX_LAG_SECONDS = env_int("REPLICA_MAX_LAG_SECONDS", default=5)
REPLICA_STICKY_SECONDS = env_int("REPLICA_STICKY_SECONDS", default=30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "sharedrecord.User"
AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-guardian: no anonymous user row; nobody gets object access implicitly.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
# The NHS design system, installed from npm by `make` (package.json), never copied by hand.
NHSUK_FRONTEND = BASE_DIR / "node_modules" / "nhsuk-frontend" / "dist" / "nhsuk"
# Its stylesheets are served without the web font it names on a third-party host
# (sharedrecord/staticfinders.py); the stripped copies are kept here.
NHSUK_FRONTEND_BUILT = BASE_DIR / ".data" / "nhsuk-frontend"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "sharedrecord.staticfinders.NhsukFrontendFinder",
]
LOGIN_URL = "/accounts/login/"

# Sign-in and session. Lockout after repeated failures (django-axes) counts
# per username and client address together, so nobody can lock a colleague
# out from elsewhere, and it answers alike whether or not the username exists.
AXES_FAILURE_LIMIT = env_int("SIGN_IN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env_int("SIGN_IN_LOCKOUT_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "sharedrecord.views.sign_in_locked_out"
AXES_CLIENT_IP_CALLABLE = "audit.context.client_address"
AXES_VERBOSE = False  # its log lines name the username and address
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_DISABLE_ACCESS_LOG = True
# Idle timeout: every request renews the session; without one for this long it
# ends. The page warns this many seconds before and offers to stay signed in.
SESSION_IDLE_TIMEOUT_MINUTES = env_int("SESSION_IDLE_TIMEOUT_MINUTES", default=15)
SESSION_IDLE_WARNING_SECONDS = env_int("SESSION_IDLE_WARNING_SECONDS", default=120)
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT_MINUTES * 60
# A session is renewed by use at most this often (sharedrecord/sessions.py), not saved on
# every request: the server may end it up to this long before SESSION_COOKIE_AGE after
# its last request, and every page counts down what the server really allows.
SESSION_RENEW_SECONDS = env_int("SESSION_RENEW_SECONDS", default=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Viewing a record. The consent model is the programme's choice:
#   implied  - the record exists unless the person opted out; staff confirm they
#              are directly involved in the person's care;
#   explicit - staff record that the person gave permission, at every visit.
CONSENT_MODEL = env_str("CONSENT_MODEL", "implied")
if CONSENT_MODEL not in ("implied", "explicit"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("CONSENT_MODEL must be 'implied' or 'explicit'.")
# How long a recorded basis lasts (within one signed-in session), and emergency access.
ACCESS_BASIS_HOURS = env_int("ACCESS_BASIS_HOURS", default=12)
BREAK_GLASS_HOURS = env_int("BREAK_GLASS_HOURS", default=4)
# Which relationships the feeds can show: an encounter, referral, appointment
# or care team from the viewer's organisation within this many days.
RELATIONSHIP_DAYS = env_int("RELATIONSHIP_DAYS", default=90)
# Privacy officers of these organisations (the programme that runs the record)
# read the whole audit trail; every other privacy officer reads their own
# organisation's record-holder view.
GOVERNANCE_ODS_CODES = env_list("GOVERNANCE_ODS_CODES")
# A parked case waiting longer than this is counted as overdue on the data
# quality officer's front page and in metrics (ingestion/workbench.py).
WORKBENCH_WAITING_HOURS = env_int("WORKBENCH_WAITING_HOURS", default=48)
# The key that signs the audit trail's checkpoints (manage.py audit_checkpoint
# and audit_verify), at least 32 characters. Give it only to the process that
# writes checkpoints, never to web or the workers: then nobody who can write
# events or rows in the database can forge one (deploy/README.md).
AUDIT_CHECKPOINT_KEY = env_str("AUDIT_CHECKPOINT_KEY", "")
AUDIT_CHECKPOINT_KEY_FILE = env_str("AUDIT_CHECKPOINT_KEY_FILE", "")
# The role x organisation-kind table of visible sections and the sensitive
# labels and codes: configuration, in TOML (the default is documented at
# /help/roles and in sharedrecord/access_policy.toml).
ACCESS_POLICY_FILE = Path(
    env_str("ACCESS_POLICY_FILE", str(BASE_DIR / "sharedrecord" / "access_policy.toml"))
)
LOGIN_REDIRECT_URL = "/"


# Single sign-on (OpenID Connect; NHS Care Identity Service 2 or any other provider).
# Off unless OIDC_ISSUER is set. The client authenticates with a secret
# (OIDC_CLIENT_SECRET or _FILE) or, when OIDC_CLIENT_PRIVATE_KEY_FILE names a PEM key,
# with a signed JWT (private_key_jwt). Discovery and the provider's keys are cached.
OIDC_ISSUER = env_str("OIDC_ISSUER", "").rstrip("/")
OIDC_ORIGIN = "/".join(OIDC_ISSUER.split("/")[:3]) if OIDC_ISSUER else ""
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID", "")
OIDC_CLIENT_SECRET = (
    env_secret("OIDC_CLIENT_SECRET")
    if (os.environ.get("OIDC_CLIENT_SECRET") or os.environ.get("OIDC_CLIENT_SECRET_FILE"))
    else ""
)
OIDC_CLIENT_PRIVATE_KEY_FILE = env_str("OIDC_CLIENT_PRIVATE_KEY_FILE", "")
OIDC_CLIENT_KEY_ID = env_str("OIDC_CLIENT_KEY_ID", "")
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid profile email nationalrbacaccess selectedrole")
OIDC_ACR_VALUES = env_str("OIDC_ACR_VALUES", "")
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "NHS Care Identity Service 2")
OIDC_CACHE_SECONDS = env_int("OIDC_CACHE_SECONDS", default=3600)
OIDC_TIMEOUT_SECONDS = env_int("OIDC_TIMEOUT_SECONDS", default=5)
# Clock skew allowed on ID tokens' exp, iat and nbf.
OIDC_LEEWAY_SECONDS = env_int("OIDC_LEEWAY_SECONDS", default=60)
if OIDC_ISSUER and not OIDC_CLIENT_ID:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("OIDC_ISSUER is set: set OIDC_CLIENT_ID too.")
if OIDC_ISSUER and not (OIDC_CLIENT_SECRET or OIDC_CLIENT_PRIVATE_KEY_FILE):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "OIDC_ISSUER is set: set OIDC_CLIENT_SECRET (or _FILE) or OIDC_CLIENT_PRIVATE_KEY_FILE."
    )


def _pairs(name: str) -> dict[str, str]:
    """`KEY=value,KEY=value` from the environment."""
    pairs = [item.split("=", 1) for item in env_list(name)]
    if any(len(pair) != 2 for pair in pairs):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} takes KEY=value pairs, comma-separated.")
    return {key.strip(): value.strip() for key, value in pairs}


# National RBAC job role code (R8000) = our role, replacing the built-in table entry by entry.
SSO_ROLE_MAP = _pairs("SSO_ROLE_MAP")
# acr values a provider sends that are not "AAL<n>_...", and the level each stands for.
SSO_ACR_LEVELS = {key: int(value) for key, value in _pairs("SSO_ACR_LEVELS").items()}
# Signed context launch (/launch): the audience launch tokens must name (default: this
# site's /launch address as the request came in), their longest lifetime, and how long a
# launching system's JWKS URL is cached.
LAUNCH_AUDIENCE = env_str("LAUNCH_AUDIENCE", "")
LAUNCH_MAX_SECONDS = min(env_int("LAUNCH_MAX_SECONDS", default=300), 300)
LAUNCH_JWKS_CACHE_SECONDS = env_int("LAUNCH_JWKS_CACHE_SECONDS", default=3600)
# Local passwords (development and small sites). In production (DEBUG off) a password
# needs a second factor, a TOTP code (django-otp), unless SIGN_IN_OTP_REQUIRED=false, and
# `check --deploy` then warns. SIGN_IN_PASSWORDS=false leaves single sign-on only.
SIGN_IN_PASSWORDS = env_bool("SIGN_IN_PASSWORDS", default=True)
SIGN_IN_OTP_REQUIRED = env_bool("SIGN_IN_OTP_REQUIRED", default=not DEBUG)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Shared care record")
# The sign-in assurance a session needs to read a record (3: smartcard or equivalent).
# A password alone is level 1, a password with a one-time code level 2; single sign-on
# takes the level from the ID token's acr. Lower levels may still find a person.
RECORD_MIN_AAL = env_int("RECORD_MIN_AAL", default=1)
LOGOUT_REDIRECT_URL = "/accounts/login/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env_bool("STATIC_MANIFEST", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Redis: the Celery broker and result backend, and the readiness check.
REDIS_URL = env_str("REDIS_URL", DEFAULT_REDIS_URL)


def _celery_url(url: str) -> str:
    # redis-py spells a socket `unix://`, kombu spells it `redis+socket://`.
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_RESULT_EXPIRES = 3600
# Tasks are idempotent, so a task is acknowledged only once it has run, and a
# worker that dies mid-task hands it back (shared/PITFALLS.md).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", default=3600)
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING below (JSON lines with the task's id), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A failure kept in the result backend could carry an exception's text (PostgreSQL's
# quote the values they refused): feed tasks ignore their results, errors included.
CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED = False
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "sharedrecord")
# Queues by kind (sharedrecord/celery.py): blank means CELERY_QUEUE followed by
# "-notifications" or "-maintenance" (FEED_LARGE_QUEUE below for large messages).
CELERY_TASK_ROUTES = ("sharedrecord.celery.route_task",)
NOTIFICATIONS_QUEUE = env_str("NOTIFICATIONS_QUEUE", "")
MAINTENANCE_QUEUE = env_str("MAINTENANCE_QUEUE", "")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "audit-partitions": {"task": "maintenance.audit_partitions_ensure", "schedule": 6 * 3600},
    "feed-sweep": {"task": "ingestion.feed_messages_sweep", "schedule": 60},
    # Each organisation's digest of what its feeds parked yesterday, and why.
    "parked-digest": {
        "task": "ingestion.parked_digests_compose",
        "schedule": crontab(hour=6, minute=0),
    },
    # The outcome feeds the metrics' audit chain alerts (deploy/prometheus/alerts.yml).
    "audit-verify": {
        "task": "maintenance.audit_verify",
        "schedule": env_int("AUDIT_VERIFY_SECONDS", default=6 * 3600),
    },
    "notifications-sweep": {"task": "notifications.sweep", "schedule": 30},
}

# Notifications (sharedrecord/notifications/): facts older than this when
# stored (an onboarding's history) are not news and derive no event.
NOTIFY_RECENT_DAYS = env_int("NOTIFY_RECENT_DAYS", default=30)
# Attempts per notification before it is dead-lettered, and the first retry's
# delay (doubling each attempt, capped at NOTIFY_BACKOFF_MAX_SECONDS).
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", default=8)
NOTIFY_BACKOFF_SECONDS = env_int("NOTIFY_BACKOFF_SECONDS", default=2)
NOTIFY_BACKOFF_MAX_SECONDS = env_int("NOTIFY_BACKOFF_MAX_SECONDS", default=900)
NOTIFY_TIMEOUT_SECONDS = env_int("NOTIFY_TIMEOUT_SECONDS", default=10)
# Subscription endpoints must be https; true allows http (local development, tests).
NOTIFY_ALLOW_HTTP = env_bool("NOTIFY_ALLOW_HTTP", default=False)

# Feeds: limits a partner system is told about in its 413, and the sweep.
FEED_MAX_BYTES = env_int("FEED_MAX_BYTES", default=20 * 1024 * 1024)
FEED_MAX_ENTRIES = env_int("FEED_MAX_ENTRIES", default=5000)
# How deeply a JSON message may nest arrays and objects (400 above). FHIR resources
# nest a few dozen levels at most; Python's json, the validator and the worker recurse.
FEED_MAX_DEPTH = env_int("FEED_MAX_DEPTH", default=64)
FEED_MAX_ATTEMPTS = env_int("FEED_MAX_ATTEMPTS", default=5)
FEED_STUCK_AFTER_SECONDS = env_int("FEED_STUCK_AFTER_SECONDS", default=120)
# Messages of more entries than this go to their own queue and workers (deploy/README.md),
# so a burst of large Bundles never holds up HL7 v2 and small messages behind it.
FEED_LARGE_ENTRIES = env_int("FEED_LARGE_ENTRIES", default=50)
# Blank: the Celery app's default queue's name (CELERY_QUEUE) followed by "-large".
FEED_LARGE_QUEUE = env_str("FEED_LARGE_QUEUE", "")
DATA_UPLOAD_MAX_MEMORY_SIZE = FEED_MAX_BYTES + 1024
# The MLLP listener (manage.py mllp_listen): where it listens, and the feed
# token of the one sending system it serves (MLLP has no authentication).
MLLP_HOST = env_str("MLLP_HOST", "127.0.0.1")
MLLP_PORT = env_int("MLLP_PORT", default=2575)
MLLP_FEED_TOKEN = env_str("MLLP_FEED_TOKEN", "")
MLLP_FEED_TOKEN_FILE = env_str("MLLP_FEED_TOKEN_FILE", "")

# Codes that, in a GP practice's own feed, record the person's dissent from the
# shared care record: "system|code" pairs, comma-separated. Configuration, not
# code: set the code(s) your practices' clinical systems record.
OPTOUT_FEED_CODES = env_list("OPTOUT_FEED_CODES")

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "sharedrecord.apis.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The FHIR read API: OAuth2 (django-oauth-toolkit) with SMART v1 scopes.
# FHIR_BASE_URL is the public address of /fhir/R4 (it names resources in
# Bundles and the CapabilityStatement); blank means "as the request came in".
FHIR_BASE_URL = env_str("FHIR_BASE_URL", "").rstrip("/")
FHIR_PAGE_SIZE = env_int("FHIR_PAGE_SIZE", default=100)
# A client may ask for a whole long record in a few pages (issue 20: each page has a
# fixed cost); a page is held in memory once, as text.
FHIR_PAGE_MAX = env_int("FHIR_PAGE_MAX", default=5000)
OAUTH2_PROVIDER: dict[str, Any] = {
    "SCOPES": smart_scopes(),
    "DEFAULT_SCOPES": ["user/*.read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("API_TOKEN_SECONDS", default=900),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("API_REFRESH_TOKEN_SECONDS", default=8 * 3600),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    # RFC 9700 (OAuth 2.0 Security BCP): no implicit or password grants, PKCE
    # with S256 only, tokens only in the Authorization header, hashed at rest,
    # and a replayed refresh token revokes its whole family.
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    # Rotated on every refresh, and no grace: the old refresh token is dead at once.
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    # Consent is asked every time (sharedrecord/oauth/server.py ignores approval_prompt=auto).
    "REQUEST_APPROVAL_PROMPT": "force",
    # Loopback http redirects (RFC 8252) only while developing.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"] if DEBUG else ["https"],
    # Only what .well-known/smart-configuration advertises (the authorization
    # code with PKCE S256, client credentials, refresh; client_secret_basic;
    # bearer tokens in the header), and each member of staff's tokens end with
    # the consent that made them: sign-out, a password change, deactivation,
    # or API_REFRESH_TOKEN_SECONDS after consent (sharedrecord/oauth/consent.py).
    "OAUTH2_SERVER_CLASS": "sharedrecord.oauth.server.SmartServer",
    "OAUTH2_VALIDATOR_CLASS": "sharedrecord.oauth.server.SmartValidator",
    "OAUTH2_BACKEND_CLASS": "sharedrecord.oauth.server.SmartOAuthLibCore",
}
# Named so that sharedrecord.ApiAuthorization may point at DOT's (swappable) Application.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
# Client ids of registered resource servers that may introspect any token
# (/o/introspect/); any other client may introspect only its own tokens.
API_RESOURCE_SERVERS = env_list("API_RESOURCE_SERVERS")

SPECTACULAR_SETTINGS = {
    "TITLE": "Shared care record API",
    "DESCRIPTION": (
        "Feeds for partner systems (FHIR R4 Bundles), receipts, and the opt-out registry for "
        "GP practices. Errors on feed endpoints are FHIR OperationOutcomes; elsewhere they are "
        '{"error": {"code": ..., "message": ...}}. NHS numbers travel in bodies, never paths.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Security. Cookies are secure and HSTS is on unless a developer turns them
# off; TLS is terminated in front of the app (deploy/README.md), which sets
# X-Forwarded-Proto for us.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only behind our own TLS terminator may X-Forwarded-For name the client in the
# audit trail (its rightmost entry, which the terminator appended); otherwise
# any caller could write the address of their choice into it.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", default=False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp 4): everything from our own origin, no
# inline script, no plugins, no framing, forms only to us. A document opened
# on its own sets a stricter, sandboxed policy of its own (views.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        # Signing out of single sign-on posts to our sign-out, which sends the browser
        # on to the provider's end_session_endpoint: the provider's origin may follow.
        "form-action": ["'self'", *([OIDC_ORIGIN] if OIDC_ORIGIN else [])],
    }
}

# Logs: one JSON object a line (sharedrecord/logs.py), with the request id the audit
# trail records; LOG_FORMAT=console for readable lines while developing.
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "console"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("LOG_FORMAT must be json or console.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "sharedrecord.logs.json_formatter"},
        "console": {"()": "sharedrecord.logs.console_formatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Request lines carry paths only; NHS numbers never travel in paths.
    "loggers": {
        "django.server": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO; our audit trail records them instead.
        "axes": {"level": "WARNING"},
    },
}

# Metrics (GET /metrics, sharedrecord/metrics.py): a scraper sends METRICS_TOKEN
# (or the content of METRICS_TOKEN_FILE) as a bearer token. With none set the
# endpoint answers 401, except in DEBUG (make run), where it is open.
METRICS_TOKEN = (
    env_secret("METRICS_TOKEN")
    if os.environ.get("METRICS_TOKEN") or os.environ.get("METRICS_TOKEN_FILE")
    else ""
)
# Where each process of a multi-process server (gunicorn, a Celery worker's pool)
# keeps its metrics for the endpoint to sum: a folder of its own per server, emptied
# at its start. Read by prometheus_client itself; named here so deploy files may set it.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
# A Celery worker serves its own metrics on this port (0: none), summed over its
# pool processes through PROMETHEUS_MULTIPROC_DIR (sharedrecord/taskmetrics.py).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDRESS = env_str("WORKER_METRICS_ADDRESS", "127.0.0.1")

# The demo borough (seed_demo): the password every demo user gets in DEBUG.
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "demo-sharedrecord-2026")
