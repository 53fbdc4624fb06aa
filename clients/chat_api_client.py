"""A small client of the chat server's API, on the standard library alone (urllib): copy it into your site.

    from chat_api_client import ChatApi

    chat = ChatApi("http://127.0.0.1:8890", key=os.environ["CHAT_API_KEY"])
    chat.publish("lobby", "Order 1234 has shipped")          # -> the message id
    chat.history("lobby", limit=20)["messages"]
    chat.disconnect("spammer", ban_seconds=3600)

Every call raises ``ChatApiError`` (with the API's ``status``, ``code`` and
``detail``) when the server refuses it. ``publish`` sends an idempotency key
(its own, unless given one) and tries again once after a lost connection or
a 503, so a retry never makes a second message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

DEFAULT_TIMEOUT = 10.0  # seconds for one request


class ChatApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ChatApi:
    def __init__(self, base_url: str, key: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ChatApi({self.base_url!r})"  # never the key

    # ---- rooms ---------------------------------------------------------------------

    def publish(
        self,
        room: str,
        text: str,
        user: str | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Publish ``text`` in ``room`` as ``user`` (default ``system``); the message's id."""
        body: dict[str, Any] = {"text": text, "idempotency_key": idempotency_key or uuid.uuid4().hex}
        if user is not None:
            body["user"] = user
        if user_id is not None:
            body["user_id"] = user_id
        path = f"/api/rooms/{_segment(room)}/messages"
        try:
            answer = self._call("POST", path, body)
        except (ChatApiError, OSError) as error:
            if isinstance(error, ChatApiError) and error.status != 503:
                raise
            answer = self._call("POST", path, body)  # the same key: at most one message
        return str(answer["id"])

    def history(
        self, room: str, since: str | None = None, before: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """``{"messages": [...], "complete": bool}``, oldest first."""
        query = {name: value for name, value in (("since", since), ("before", before), ("limit", limit)) if value}
        return self._call("GET", f"/api/rooms/{_segment(room)}/messages", query=query)

    def delete(self, room: str, message_id: str) -> None:
        """Delete a message: every member gets ``deleted``, later joins do not see it."""
        self._call("DELETE", f"/api/rooms/{_segment(room)}/messages/{_segment(message_id)}")

    def members(self, room: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/rooms/{_segment(room)}/members")["members"])

    def rooms(self, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """``{"rooms": [{"room", "members"}...], "next": cursor or None}``."""
        query = {name: value for name, value in (("cursor", cursor), ("limit", limit)) if value}
        return self._call("GET", "/api/rooms", query=query)

    # ---- moderation ----------------------------------------------------------------

    def disconnect(self, user: str, room: str | None = None, ban_seconds: int | None = None) -> dict[str, Any]:
        """Close the user's connections (to ``room``, or every room); with ``ban_seconds``, refuse them that long."""
        body: dict[str, Any] = {}
        if room is not None:
            body["room"] = room
        if ban_seconds is not None:
            body["ban_seconds"] = ban_seconds
        return self._call("POST", f"/api/users/{_segment(user)}/disconnect", body)

    def mute(self, room: str, user: str, seconds: int) -> dict[str, Any]:
        return self._call("POST", f"/api/rooms/{_segment(room)}/mutes", {"user": user, "seconds": seconds})

    def unmute(self, room: str, user: str) -> None:
        self._call("DELETE", f"/api/rooms/{_segment(room)}/mutes/{_segment(user)}")

    def unban(self, user: str, room: str | None = None) -> None:
        if room is None:
            self._call("DELETE", f"/api/bans/{_segment(user)}")
        else:
            self._call("DELETE", f"/api/rooms/{_segment(room)}/bans/{_segment(user)}")

    def bans(self, room: str | None = None) -> list[dict[str, Any]]:
        path = "/api/bans" if room is None else f"/api/rooms/{_segment(room)}/bans"
        return list(self._call("GET", path)["bans"])

    def mutes(self, room: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/rooms/{_segment(room)}/mutes")["mutes"])

    # ---- the one way out -------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = self.base_url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as error:
            raise _refusal(error) from None


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _refusal(error: urllib.error.HTTPError) -> ChatApiError:
    try:
        body = json.loads(error.read())
        return ChatApiError(error.code, str(body["error"]), str(body["detail"]))
    except (ValueError, KeyError, TypeError):
        return ChatApiError(error.code, "http_error", str(error.reason))
