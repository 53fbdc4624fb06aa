"""The HTML pages: lobby, name choice, room page, and styled error pages."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tornado.web import HTTPError, RequestHandler

from handlers.identity import cookie_user, guest_name, is_room_name, is_user_name, remember_user, room_lookalike

ROOM_NAME_RULE = (
    "A room name is 1 to 100 letters, digits or underscores, in any script "
    "(café and 日本語 are fine); spaces, dashes, dots and slashes are not."
)
LOOKALIKE_RULE = (
    "a name that differs from another only in characters that look alike "
    "(another alphabet's letters, full-width forms, invisible fillers) is not a room of its own."
)
_NOT_WORD = re.compile(r"\W+")


def suggest_room(path: str) -> str | None:
    """A valid room name close to what was asked for (``my-room`` -> ``my_room``, ``lоbby`` -> ``lobby``), if any."""
    match = re.fullmatch(r"/chat/([^/]+)/?", path)
    if match is None:
        return None
    wanted = _NOT_WORD.sub("_", unquote(match.group(1))).strip("_")[:100]
    wanted = room_lookalike(wanted) or wanted
    return wanted if wanted and is_room_name(wanted) else None


def content_policy(also_connect: str = "") -> str:
    """The pages' CSP; ``also_connect``: an origin the page may fetch from too (the host site's token URL)."""
    # connect-src 'self' covers ws: and wss: to this host (CSP 3); no page may frame ours.
    connect = f"'self' {also_connect}" if also_connect else "'self'"
    return f"default-src 'self'; connect-src {connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


class PageHandler(RequestHandler):
    def current_name(self) -> str:
        """The visitor's name; a first visit is given a guest name that sticks."""
        name = cookie_user(self)
        if name is None:
            name = guest_name()
            remember_user(self, name)
        return name

    def set_cookie(self, name: str, value: str | bytes, *args: Any, secure: bool = False, **kwargs: Any) -> None:
        """Every cookie of a page served over https is Secure: the _xsrf one too (its settings are static)."""
        super().set_cookie(name, value, *args, secure=secure or self.request.protocol == "https", **kwargs)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy", content_policy())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as pages of the site, saying what went wrong and where to go, never a traceback."""
        if status_code == 404:
            heading, paragraphs = "No such page", self._not_found_text()
        else:
            heading = f"{status_code}: {self._reason}"
            paragraphs = ["The server could not answer this request. Try again, or start from the lobby."]
        suggestion = suggest_room(self.request.path) if status_code == 404 else None
        self.render(
            "error.html",
            status_code=status_code,
            heading=heading,
            paragraphs=paragraphs,
            suggestion=suggestion,
            suggestion_url=self.reverse_url("room", quote(suggestion)) if suggestion else "",
        )

    def _not_found_text(self) -> list[str]:
        match = re.fullmatch(r"/chat/(\w+)/?", unquote(self.request.path))
        lookalike = room_lookalike(match.group(1)) if match else None
        if match and lookalike:
            return [f"“{match.group(1)}” looks like the room “{lookalike}” without being it: {LOOKALIKE_RULE}"]
        if self.request.path.startswith("/chat/"):
            return [f"“{unquote(self.request.path)}” is not a room page.", ROOM_NAME_RULE]
        return [f"There is nothing at “{unquote(self.request.path)}”."]


class NotFoundHandler(PageHandler):
    """Every URL no route matches: the styled 404."""

    def prepare(self) -> None:
        raise HTTPError(404)


class LobbyHandler(PageHandler):
    def get(self) -> None:
        self.render("lobby.html", user=self.current_name(), name_error=None)


class UserNameHandler(PageHandler):
    """POST of the lobby's name form (XSRF-checked by Tornado)."""

    def post(self) -> None:
        name = self.get_body_argument("name", "").strip()
        if not is_user_name(name):
            self.set_status(400)
            self.render("lobby.html", user=self.current_name(), name_error="A name is 1 to 32 printable characters.")
            return
        remember_user(self, name)
        self.redirect(self.reverse_url("lobby"))


class RoomPageHandler(PageHandler):
    def initialize(self, max_chars: int = 4096, token: dict[str, str] | None = None) -> None:
        self.max_chars = max_chars
        self.token = token  # token mode: what the page's token script needs (the refresh URL)

    def get(self, room: str) -> None:
        if not is_room_name(room):
            raise HTTPError(404)
        # In token mode the name is the token's, known once the socket is ready.
        user = self.current_name() if self.token is None else ""
        refresh_url = urlsplit((self.token or {}).get("refresh_url", ""))
        if refresh_url.scheme in ("http", "https"):  # the host site on an origin of its own
            self.set_header("Content-Security-Policy", content_policy(f"{refresh_url.scheme}://{refresh_url.netloc}"))
        self.render("room.html", room=room, user=user, max_chars=self.max_chars, token=self.token)
