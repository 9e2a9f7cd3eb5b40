"""Settings for Anxin Repay, all read from the environment.

Embedded default (no servers): SQLite in WAL mode and a Celery broker on a
SQLite file. Production: DATABASE_URL (PostgreSQL) and REDIS_URL (broker and
cache). Every variable is listed in README.md.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from portal.env import (
    env_bool,
    env_int,
    env_json_object,
    env_list,
    env_str,
    env_url,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ANXIN_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = secret_key(VAR_DIR, debug=DEBUG)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_htmx",
    "js_lib_htmx",
    "template_partials",
    "django_celery_beat",
    "django_prometheus",
    "axes",
    "notifications",
    "repayments",
    "repayments.api",
    "portal",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "portal.middleware.IdleSessionMiddleware",  # idle timeout; before auth
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'anxin.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while the worker writes; IMMEDIATE
        # takes the write lock up front instead of failing mid-transaction.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker and cache -------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "").strip()
if REDIS_URL:
    REDIS_URL = env_url("REDIS_URL", REDIS_URL, schemes=("redis", "rediss"))
    CELERY_BROKER_URL = REDIS_URL
    # The broker must never evict a queued task; a cache may evict. Production points
    # CACHE_REDIS_URL at a Redis of its own (maxmemory, allkeys-lru).
    CACHE_REDIS_URL = REDIS_URL
    if env_str("CACHE_REDIS_URL", "").strip():
        CACHE_REDIS_URL = env_url("CACHE_REDIS_URL", "", schemes=("redis", "rediss"))
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
        }
    }
    # Sessions are read on every signed-in request: from the shared cache, written
    # through to the database. Not with the per-process cache below, where a session
    # ended in one process would live on in another's copy.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CELERY_BROKER_URL = f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Reliability settings measured in shared research (F5-F7): a killed worker
# child must give its task back, and a long task must not be redelivered while
# it is still running.
CELERY_TASK_ACKS_LATE = True
# Tests run tasks in-process; a lost message is simulated by patching .delay.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
# Redis only: longer than the longest task, so a running task is not redelivered.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600} if REDIS_URL else {}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Every periodic job, in one place. Beat only wakes claimers: due work lives in
# database rows, never in long ETAs on the broker.
CELERY_BEAT_SCHEDULE = {
    # 00:05 Shanghai: write one debit row per installment due today (idempotent).
    "auto-debit-schedule": {
        "task": "repayments.tasks.auto_debit_schedule_today",
        "schedule": crontab(hour=0, minute=5),
    },
    # Every 5 minutes: refund any second success flagged on a payment's timeline.
    "refund-duplicates": {
        "task": "repayments.tasks.refund_duplicates",
        "schedule": 300.0,
    },
    # Every minute: claim due debit rows (from AUTO_DEBIT_HOUR on, plus retries)
    # and hand each to a worker; also give back rows a dead worker left claimed.
    "auto-debit-dispatch": {
        "task": "repayments.tasks.auto_debit_dispatch",
        "schedule": 60.0,
    },
    # Every 15 seconds: ask channels about open attempts whose query is due
    # (lost callbacks, time-outs, abandoned wallet orders).
    "janitor-dispatch": {
        "task": "repayments.tasks.janitor_dispatch",
        "schedule": 15.0,
    },
    # Every 30 seconds: text password reset codes whose task was lost or failed.
    "sweep-password-reset-codes": {
        "task": "repayments.tasks.sweep_password_reset_codes",
        "schedule": 30.0,
    },
    # Every 5 seconds: send due notices; a claim left by a dead worker is due
    # again when its lease ends, so this is also the outbox sweeper.
    "dispatch-notices": {
        "task": "notifications.tasks.dispatch_notices",
        "schedule": 5.0,
    },
    # 10:30 Shanghai, once channels publish yesterday's statements: reconcile
    # each channel (a statement not there yet is retried with backoff).
    "reconcile-yesterday": {
        "task": "repayments.tasks.reconcile_yesterday",
        "schedule": crontab(hour=10, minute=30),
    },
    # 10:00 Shanghai: due-date reminders and overdue alerts (quiet hours respected).
    "send-reminders": {
        "task": "repayments.tasks.send_reminders",
        "schedule": crontab(hour=10, minute=0),
    },
    # Every minute: process callbacks stored but never processed.
    "sweep-callbacks": {
        "task": "repayments.tasks.sweep_callbacks",
        "schedule": 60.0,
    },
    # 03:30 Shanghai, after the nightly settlement window: prove the audit
    # log is intact and alert (log at ERROR) if any row was altered.
    "verify-audit-chain-nightly": {
        "task": "repayments.tasks.verify_audit_chain",
        "schedule": crontab(hour=3, minute=30),
    },
}

# --- Authentication ---------------------------------------------------------
AUTH_USER_MODEL = "repayments.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "repayments.auth.PhoneOrUsernameBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"
# Carrier-grade NAT puts many borrowers behind one IP: lock (user, IP) pairs,
# and let a lock expire instead of needing staff to lift it.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", True)

# --- Internationalisation ---------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Uploads (dispute screenshots). Never served publicly: only ownership-checked views
# read them, so no URL pattern serves MEDIA_URL.
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("ANXIN_MANIFEST_STATIC", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (secure unless DEBUG) -----------------------------------------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
# Idle timeout: portal.middleware.IdleSessionMiddleware ends a session idle this long
# and refreshes its last-seen time (and so this expiry) at most once a minute, instead
# of SESSION_SAVE_EVERY_REQUEST writing every session on every request.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_MINUTES", 30, minimum=1) * 60
SESSION_SAVE_EVERY_REQUEST = False
X_FRAME_OPTIONS = "DENY"

# --- REST framework ---------------------------------------------------------
# The borrower API (repayments.api): token or session auth, one error shape
# (RFC 9457 problem details), throttles per scope, every list paginated.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "repayments.api.schema.ProblemAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes "not signed in" a 401.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["repayments.api.permissions.IsBorrower"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "repayments.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "repayments.api.pagination.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_THROTTLE_CLASSES": ["repayments.api.throttling.BorrowerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "borrower": "120/min",
        "payments": "10/min",
        "auth": "20/min",
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Anxin Repay API",
    "DESCRIPTION": "Borrower API v1: loans, schedules, repayments, paying, settlement "
    "quotes, disputes and notices. Errors are RFC 9457 problem details; see docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "repayments.domain.states.PaymentStatus",
        "AttemptStatusEnum": "repayments.domain.states.AttemptStatus",
        "LoanStatusEnum": "repayments.models.loans.LoanStatus",
        "DisputeStatusEnum": "repayments.models.disputes.DisputeStatus",
        "NoticeStatusEnum": "notifications.models.NoticeStatus",
        "DeliveryStatusEnum": "notifications.models.DeliveryStatus",
        "InstallmentStatusEnum": ["paid", "partially_paid", "overdue", "upcoming"],
        "PaymentChannelEnum": "repayments.models.payments.Channel",
        "PaymentMethodEnum": "repayments.models.products.PaymentMethodType",
        "DeliveryChannelEnum": "notifications.models.DeliveryChannel",
        "NoticeKindEnum": "notifications.models.NoticeKind",
        "EventKindEnum": "repayments.models.payments.EventKind",
        "PaymentPurposeEnum": "repayments.models.payments.PaymentPurpose",
        "DisputeCategoryEnum": "repayments.models.disputes.DisputeCategory",
        "ReasonCodeEnum": "repayments.domain.availability.Reason",
    },
}

# --- Domain -----------------------------------------------------------------
# How long a settlement quote stays valid once computed.
SETTLEMENT_QUOTE_VALID_HOURS = env_int("SETTLEMENT_QUOTE_VALID_HOURS", 24, minimum=1)
# Local hour at which due installments are withheld from bound cards.
AUTO_DEBIT_HOUR = env_int("AUTO_DEBIT_HOUR", 9, minimum=0, maximum=20)
# Shown when no online method can take a payment (bank transfer still can).
REPAYMENT_BANK_ACCOUNT = env_str(
    "REPAYMENT_BANK_ACCOUNT", "中国工商银行 北京分行 0200 0000 0000 0000 000 (安心汽车金融有限公司)"
)

# --- Payment channels -------------------------------------------------------
# Defaults point at the local channel sandbox with keys made by
# `manage.py generate_channel_keys` into var/keys (never committed). Pointing an
# adapter at a real channel is only a matter of these variables.
KEYS_DIR = Path(env_str("ANXIN_KEYS_DIR", str(VAR_DIR / "keys")))
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CHANNEL_SANDBOX_URL = env_str("CHANNEL_SANDBOX_URL", "http://127.0.0.1:8100").rstrip("/")
CHANNEL_TIMEOUT_SECONDS = env_int("CHANNEL_TIMEOUT_SECONDS", 10, minimum=1, maximum=60)

ALIPAY_APP_ID = env_str("ALIPAY_APP_ID", "2021000000000001")
ALIPAY_SELLER_ID = env_str("ALIPAY_SELLER_ID", "2088000000000001")
ALIPAY_GATEWAY_URL = env_str("ALIPAY_GATEWAY_URL", f"{CHANNEL_SANDBOX_URL}/alipay/gateway.do")
ALIPAY_APP_PRIVATE_KEY_PATH = env_str(
    "ALIPAY_APP_PRIVATE_KEY_PATH", str(KEYS_DIR / "alipay" / "merchant_private.pem")
)
ALIPAY_PUBLIC_KEY_PATH = env_str(
    "ALIPAY_PUBLIC_KEY_PATH", str(KEYS_DIR / "alipay" / "platform_public.pem")
)

WECHATPAY_MCHID = env_str("WECHATPAY_MCHID", "1900000001")
WECHATPAY_APPID = env_str("WECHATPAY_APPID", "wx0000000000000001")
WECHATPAY_API_URL = env_str("WECHATPAY_API_URL", f"{CHANNEL_SANDBOX_URL}/wechatpay")
WECHATPAY_PRIVATE_KEY_PATH = env_str(
    "WECHATPAY_PRIVATE_KEY_PATH", str(KEYS_DIR / "wechatpay" / "merchant_private.pem")
)
WECHATPAY_CERT_SERIAL = env_str("WECHATPAY_CERT_SERIAL", "5A1B0C0D0E0F1A2B3C4D5E6F")
WECHATPAY_PLATFORM_PUBLIC_KEY_PATH = env_str(
    "WECHATPAY_PLATFORM_PUBLIC_KEY_PATH", str(KEYS_DIR / "wechatpay" / "platform_public.pem")
)
WECHATPAY_APIV3_KEY_PATH = KEYS_DIR / "wechatpay" / "apiv3.key"
WECHATPAY_APIV3_KEY = env_str(
    "WECHATPAY_APIV3_KEY",
    WECHATPAY_APIV3_KEY_PATH.read_text().strip() if WECHATPAY_APIV3_KEY_PATH.exists() else "",
)

UNIONPAY_MER_ID = env_str("UNIONPAY_MER_ID", "777290058110048")
UNIONPAY_API_URL = env_str("UNIONPAY_API_URL", f"{CHANNEL_SANDBOX_URL}/unionpay")
UNIONPAY_PRIVATE_KEY_PATH = env_str(
    "UNIONPAY_PRIVATE_KEY_PATH", str(KEYS_DIR / "unionpay" / "merchant_private.pem")
)
UNIONPAY_PUBLIC_KEY_PATH = env_str(
    "UNIONPAY_PUBLIC_KEY_PATH", str(KEYS_DIR / "unionpay" / "platform_public.pem")
)

# --- Notifications ----------------------------------------------------------
# Below the payment channels: the SMS gateway's default is the channel sandbox.
# A failure notice waits this long and is re-checked before it is sent.
NOTICE_FAILURE_SETTLE_SECONDS = env_int("NOTICE_FAILURE_SETTLE_SECONDS", 120, maximum=3600)
NOTIFY_SMS_PROVIDER = env_str("NOTIFY_SMS_PROVIDER", "file")
NOTIFY_PUSH_PROVIDER = env_str("NOTIFY_PUSH_PROVIDER", "file")
for _name, _value, _allowed in (
    ("NOTIFY_SMS_PROVIDER", NOTIFY_SMS_PROVIDER, ("file", "aliyun", "off")),
    ("NOTIFY_PUSH_PROVIDER", NOTIFY_PUSH_PROVIDER, ("file", "fcm", "off")),
):
    if _value not in _allowed:
        raise ImproperlyConfigured(f"{_name} must be one of {', '.join(_allowed)} (got {_value!r})")
NOTIFY_PROVIDER_TIMEOUT_SECONDS = env_int(
    "NOTIFY_PROVIDER_TIMEOUT_SECONDS", 10, minimum=1, maximum=60
)


# Alibaba Cloud SMS. The defaults reach the channel sandbox's gateway with
# SANDBOX-ONLY credentials and template codes; a real endpoint needs all three
# set in the environment (checked below). Secrets never live in the repository.
ALIYUN_SMS_ENDPOINT = env_url(
    "ALIYUN_SMS_ENDPOINT", f"{CHANNEL_SANDBOX_URL}/aliyun-sms/", schemes=("http", "https")
)
ALIYUN_SMS_ACCESS_KEY_ID = env_str("ALIYUN_SMS_ACCESS_KEY_ID", "SANDBOX-ONLY-KEY-ID")
ALIYUN_SMS_ACCESS_KEY_SECRET = env_str("ALIYUN_SMS_ACCESS_KEY_SECRET", "sandbox-only-secret")
ALIYUN_SMS_SIGN_NAME = env_str("ALIYUN_SMS_SIGN_NAME", "安心还款")
ALIYUN_SMS_REGION = env_str("ALIYUN_SMS_REGION", "cn-hangzhou")
# Notice kind -> approved template code, e.g. {"payment_succeeded": "SMS_123456789"}.
ALIYUN_SMS_TEMPLATE_CODES = env_json_object(
    "ALIYUN_SMS_TEMPLATE_CODES",
    {
        kind: f"SMS_SANDBOX_{kind.upper()}"
        for kind in (
            "payment_processing",
            "payment_succeeded",
            "payment_failed",
            "correction",
            "due_reminder",
            "overdue",
            "quote_issued",
            "dispute_update",
        )
    },
)
if NOTIFY_SMS_PROVIDER == "aliyun" and not ALIYUN_SMS_ENDPOINT.startswith(CHANNEL_SANDBOX_URL):
    for _name in (
        "ALIYUN_SMS_ACCESS_KEY_ID",
        "ALIYUN_SMS_ACCESS_KEY_SECRET",
        "ALIYUN_SMS_TEMPLATE_CODES",
    ):
        if not env_str(_name, "").strip():
            raise ImproperlyConfigured(f"{_name} must be set to use {ALIYUN_SMS_ENDPOINT}.")

# Firebase Cloud Messaging (HTTP v1). The key file is a Google service-account
# JSON key kept outside the repository; the project defaults to the file's own.
FCM_PROJECT_ID = env_str("FCM_PROJECT_ID", "")
FCM_SERVICE_ACCOUNT_PATH = env_str("FCM_SERVICE_ACCOUNT_PATH", "")
FCM_API_URL = env_url("FCM_API_URL", "https://fcm.googleapis.com", schemes=("http", "https"))
FCM_TOKEN_URL = env_url(
    "FCM_TOKEN_URL", "https://oauth2.googleapis.com/token", schemes=("http", "https")
)
if NOTIFY_PUSH_PROVIDER == "fcm" and not FCM_SERVICE_ACCOUNT_PATH:
    raise ImproperlyConfigured(
        "FCM_SERVICE_ACCOUNT_PATH must be set when NOTIFY_PUSH_PROVIDER=fcm."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
