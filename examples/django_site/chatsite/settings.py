"""Settings of the example host site: Django's login, sessions, and the key it signs chat tokens with.

Secrets come from the environment, never from this file: ``DJANGO_SECRET_KEY``
(sessions; a random one per start when unset, which logs everyone out at
restart) and ``CHAT_TOKEN_SECRET`` (the HS256 key the chat server is given
too, at least 32 bytes), and for the "Notify the room" button ``CHAT_API_URL``
(the chat server's API, its ``--api-port``) and ``CHAT_API_KEY`` (one of the
chat server's ``CHAT_API_KEYS``).
"""

import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# The chat server's API client (chat_api_client.py, one file on the standard
# library) is imported from the repository's clients/ folder so the example
# runs from a checkout; a real site copies that one file into its own code.
sys.path.append(str(BASE_DIR.parent.parent / "clients"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = [host for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if host]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "chatsite",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "chatsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "chatsite.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DATABASE", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Behind the proxy that also serves the chat: the session cookie is the site's, HttpOnly.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# The chat server's token mode: the same key (--token-secret-file or CHAT_TOKEN_SECRET there).
CHAT_TOKEN_SECRET = os.environ.get("CHAT_TOKEN_SECRET", "")
CHAT_TOKEN_SECONDS = int(os.environ.get("CHAT_TOKEN_SECONDS", "300"))
CHAT_TOKEN_AUDIENCE = os.environ.get("CHAT_TOKEN_AUDIENCE", "")

# The chat server's API, for the "Notify the room" button: unset, the button says it is not configured.
CHAT_API_URL = os.environ.get("CHAT_API_URL", "")
CHAT_API_KEY = os.environ.get("CHAT_API_KEY", "")
