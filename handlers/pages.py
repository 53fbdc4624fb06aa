"""The HTML pages of section 2: lobby, name choice, room page."""

from __future__ import annotations

from tornado.web import HTTPError, RequestHandler

from handlers.identity import cookie_user, guest_name, is_room_name, is_user_name, remember_user


class PageHandler(RequestHandler):
    def current_name(self) -> str:
        """The visitor's name; a first visit is given a guest name that sticks."""
        name = cookie_user(self)
        if name is None:
            name = guest_name()
            remember_user(self, name)
        return name

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header(
            "Content-Security-Policy",
            # connect-src 'self' covers ws: and wss: to this host (CSP 3); no page may frame ours.
            "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )


class LobbyHandler(PageHandler):
    def get(self) -> None:
        self.render("lobby.html", user=self.current_name(), name_error=None)


class UserNameHandler(PageHandler):
    """POST of the lobby's name form (XSRF-checked by Tornado)."""

    def post(self) -> None:
        name = self.get_body_argument("name", "").strip()
        if not is_user_name(name):
            self.set_status(400)
            self.render(
                "lobby.html", user=self.current_name(),
                name_error="A name is 1 to 32 printable characters.",
            )
            return
        remember_user(self, name)
        self.redirect(self.reverse_url("lobby"))


class RoomPageHandler(PageHandler):
    def get(self, room: str) -> None:
        if not is_room_name(room):
            raise HTTPError(404)
        self.render("room.html", room=room, user=self.current_name())
