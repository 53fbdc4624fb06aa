"""The host site's side of the chat: who may chat where, and the tokens that say so.

The chat server (in token mode) trusts what these tokens say: ``sub`` is the
Django user's id, ``name`` its user name, ``rooms`` the rooms its groups
grant (a group's name is a room name, ``*`` wildcards allowed). The room
page fetches ``/chat-token/`` with the site's session cookie before its
token expires (``--token-refresh-url /chat-token/``).
"""

import time

import jwt
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def granted_rooms(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def issue_token(user) -> str:
    if len(settings.CHAT_TOKEN_SECRET.encode()) < 32:
        raise ImproperlyConfigured("set CHAT_TOKEN_SECRET (at least 32 bytes), the chat server's token key")
    claims = {
        "sub": str(user.pk),
        "name": user.get_username(),
        "rooms": granted_rooms(user),
        "exp": int(time.time()) + settings.CHAT_TOKEN_SECONDS,
    }
    if settings.CHAT_TOKEN_AUDIENCE:
        claims["aud"] = settings.CHAT_TOKEN_AUDIENCE
    return jwt.encode(claims, settings.CHAT_TOKEN_SECRET, algorithm="HS256")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"rooms": granted_rooms(request.user)})


@never_cache
@require_GET
def chat_token(request: HttpRequest) -> JsonResponse:
    """A fresh token for the logged-in user; 401 once the session has ended (the page then says so)."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    return JsonResponse({"token": issue_token(request.user)})
