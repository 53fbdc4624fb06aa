"""The host site's side of the chat: who may chat where, and the tokens that say so.

The chat server (in token mode) trusts what these tokens say: ``sub`` is the
Django user's id, ``name`` its user name, ``rooms`` the rooms its groups
grant (a group's name is a room name, ``*`` wildcards allowed). The room
page fetches ``/chat-token/`` with the site's session cookie before its
token expires (``--token-refresh-url /chat-token/``).

The home page's "Notify the room" button posts to ``notify_room``, which
speaks into the room through the chat server's API as the logged-in user.
"""

import logging
import re
import time

import jwt
from chat_api_client import ChatApi, ChatApiError
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

log = logging.getLogger(__name__)

NOTICE_MAX_CHARS = 1000  # a notice is short; the chat server's own limit (--max-message-chars) is higher
ROOM_NAME = re.compile(r"\w{1,100}")  # the chat server's room names; a group such as team_* is a pattern


def granted_rooms(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def notifiable_rooms(user) -> list[str]:
    """The rooms the user may notify: their groups that name one room (not a pattern such as team_*)."""
    return [name for name in granted_rooms(user) if ROOM_NAME.fullmatch(name)]


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
    context = {
        "rooms": granted_rooms(request.user),
        "notifiable": notifiable_rooms(request.user),
        "notice_max_chars": NOTICE_MAX_CHARS,
    }
    return render(request, "home.html", context)


@login_required
@require_POST
def notify_room(request: HttpRequest) -> HttpResponse:
    """Publish the form's text in a room the user's groups grant, as that user; back home with the outcome."""
    room = request.POST.get("room", "")
    if room not in notifiable_rooms(request.user):
        return HttpResponseForbidden("Your groups do not grant this room.")
    text = request.POST.get("text", "").strip()
    if not text or len(text) > NOTICE_MAX_CHARS:
        messages.error(request, f"Not sent to {room}: write 1 to {NOTICE_MAX_CHARS} characters.")
    elif not (settings.CHAT_API_URL and settings.CHAT_API_KEY):
        messages.error(request, f"Not sent to {room}: the chat API is not configured (CHAT_API_URL, CHAT_API_KEY).")
    else:
        publish_notice(request, room, text)
    return redirect("home")


def publish_notice(request: HttpRequest, room: str, text: str) -> None:
    chat = ChatApi(settings.CHAT_API_URL, key=settings.CHAT_API_KEY)
    try:
        chat.publish(room, text, user=request.user.get_username(), user_id=str(request.user.pk))
    except ChatApiError as error:
        log.warning("chat API refused a notice to %s: %s %s", room, error.status, error.code)  # never the text
        messages.error(request, f"Not sent to {room}: the chat server refused it ({error.detail}).")
    except OSError as error:
        log.warning("chat API unreachable for a notice to %s: %s", room, error)
        messages.error(request, f"Not sent to {room}: the chat server did not answer; try again.")
    else:
        messages.success(request, f"Sent to {room}.")


@never_cache
@require_GET
def chat_token(request: HttpRequest) -> JsonResponse:
    """A fresh token for the logged-in user; 401 once the session has ended (the page then says so)."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    return JsonResponse({"token": issue_token(request.user)})
