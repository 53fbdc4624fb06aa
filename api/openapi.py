"""The API's OpenAPI 3.1 document, served at ``/api/openapi.json`` (no key needed to read it).

Kept beside the routes: tests/test_api_openapi.py validates it and checks
that every path and method in it answers and every route of the application
is in it, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

import orjson

from api.base import MAX_BODY_BYTES, ApiHandler
from bus.moderation import MAX_SECONDS

_ERROR = {"$ref": "#/components/responses/Error"}
_ROOM = {"name": "room", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^\w{1,100}$"}}
_USER = {
    "name": "user",
    "in": "path",
    "required": True,
    "description": "a display name, or in token mode a user id (the token's sub); percent-encoded",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}
_MESSAGE_ID = {"name": "id", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/MessageId"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _ok(status: str, schema: str, description: str, refusals: tuple[str, ...]) -> dict[str, Any]:
    answer = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    return {status: answer, **{code: _ERROR for code in ("401", "413", "429", *refusals)}}


def _op(summary: str, responses: dict[str, Any], *params: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "parameters": list(params), "responses": responses}
    if body is not None:
        operation["requestBody"] = _body(body)
    return operation


def _listing(summary: str, plural: str, refusals: tuple[str, ...], *params: dict[str, Any]) -> dict[str, Any]:
    """A GET of the bans or the mutes in force."""
    return _op(summary, _ok("200", plural.title(), f"the {plural}", refusals), *params)


def _lift(summary: str, *params: dict[str, Any]) -> dict[str, Any]:
    """A DELETE that lifts a ban or a mute: 404 when there is none to lift."""
    return _op(summary, _ok("200", "Lifted", "lifted", ("400", "404", "503")), *params)


def _post(summary: str, body: str, ok: tuple[str, str, str], *params: dict[str, Any]) -> dict[str, Any]:
    """A POST with a JSON body; ``ok`` is its success (status, schema, description); refused with 400 or 503."""
    return _op(summary, _ok(*ok, ("400", "503")), *params, body=body)


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_SANCTION = _object(
    {
        "user": _STRING,
        "room": _NULLABLE_STRING,
        "until": {"type": ["integer", "null"], "description": "ms since the epoch; null: until lifted"},
    },
    ("user", "room", "until"),
)
_SECONDS = {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS}

SCHEMAS: dict[str, Any] = {
    "MessageId": {"type": "string", "pattern": r"^\d+-\d+$", "description": "<ms>-<seq>, ordered by the two numbers"},
    "Error": _object({"error": _STRING, "detail": _STRING}, ("error", "detail")),
    "Publish": _object(
        {
            "text": {"type": "string", "minLength": 1},
            "user": {"type": "string", "default": "system", "maxLength": 32},
            "user_id": {"type": "string", "maxLength": 128},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        ("text",),
    ),
    "Published": _object({"id": {"$ref": "#/components/schemas/MessageId"}, "duplicate": {"type": "boolean"}}, ("id",)),
    "Message": _object(
        {
            "type": {"const": "message"},
            "id": {"$ref": "#/components/schemas/MessageId"},
            "room": _STRING,
            "user": _STRING,
            "user_id": _STRING,
            "message": _STRING,
            "ts": {"type": "integer"},
            "edited": {"type": "boolean"},
        },
        ("type", "id", "room", "user", "message", "ts"),
    ),
    "Messages": _object(
        {
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "complete": {"type": "boolean"},
        },
        ("messages", "complete"),
    ),
    "Deleted": _object({"id": _STRING, "deleted": {"type": "boolean"}}, ("id", "deleted")),
    "Members": _object(
        {
            "members": {
                "type": "array",
                "items": _object(
                    {"user": _STRING, "user_id": _STRING, "connections": {"type": "integer"}}, ("user", "connections")
                ),
            }
        },
        ("members",),
    ),
    "Rooms": _object(
        {
            "rooms": {
                "type": "array",
                "items": _object({"room": _STRING, "members": {"type": "integer"}}, ("room", "members")),
            },
            "next": {"type": ["string", "null"], "description": "pass as cursor for the next page; null: no more"},
        },
        ("rooms", "next"),
    ),
    "Disconnect": _object({"room": {"type": "string", "description": "omitted: every room"}, "ban_seconds": _SECONDS}),
    "Disconnected": _object(
        {
            "user": _STRING,
            "room": _NULLABLE_STRING,
            "ban": {"oneOf": [{"$ref": "#/components/schemas/Sanction"}, {"type": "null"}]},
        },
        ("user", "room", "ban"),
    ),
    "Mute": _object({"user": _STRING, "seconds": _SECONDS}, ("user", "seconds")),
    "Sanction": _SANCTION,
    "Bans": _object({"bans": {"type": "array", "items": {"$ref": "#/components/schemas/Sanction"}}}, ("bans",)),
    "Mutes": _object({"mutes": {"type": "array", "items": {"$ref": "#/components/schemas/Sanction"}}}, ("mutes",)),
    "Lifted": _object({"lifted": {"type": "boolean"}}, ("lifted",)),
    "Cluster": _object(
        {
            "bus": {"enum": ["memory", "redis"]},
            "at": {"type": "integer", "description": "ms since the epoch"},
            "processes": {"type": "array", "items": {"$ref": "#/components/schemas/Process"}},
            "rooms": {
                "type": "array",
                "items": _object(
                    {
                        "room": _STRING,
                        "users": {"type": "integer"},
                        "connections": {"type": "integer"},
                        "last_message_age": {"type": ["number", "null"], "description": "seconds"},
                    },
                    ("room", "users", "connections", "last_message_age"),
                ),
            },
            "totals": {"type": "object"},
        },
        ("bus", "at", "processes", "rooms", "totals"),
    ),
    "Process": _object(
        {
            "node": _STRING,
            "incarnation": _STRING,
            "state": {"enum": ["ready", "not ready", "stopped", "silent"]},
            "reason": _NULLABLE_STRING,
            "address": _NULLABLE_STRING,
            "api": _NULLABLE_STRING,
            "rooms": {"type": ["integer", "null"]},
            "connections": {"type": ["integer", "null"]},
            "delivered": {"type": ["integer", "null"]},
            "delivered_per_second": {"type": ["number", "null"]},
            "started_at": {"type": ["integer", "null"]},
            "heartbeat_age": {"type": "number"},
            "record_age": {"type": ["number", "null"], "description": "seconds since its status record was written"},
            "lag": _object(
                {
                    "behind": {"type": "integer"},
                    "seconds": {"type": "number"},
                    "pending": {"type": "integer"},
                    "rooms_checked": {"type": "integer"},
                    "rooms_held": {"type": "integer"},
                },
                ("behind", "seconds", "pending", "rooms_checked", "rooms_held"),
            ),
        },
        ("node", "incarnation", "state", "heartbeat_age", "lag"),
    ),
}

_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
PATHS: dict[str, Any] = {
    "/api/rooms/{room}/messages": {
        "post": _post("Publish a message, as a member would", "Publish", ("201", "Published", "stored"), _ROOM),
        "get": _op(
            "Read the room's retained messages, oldest first",
            _ok("200", "Messages", "a page", ("400", "503")),
            _ROOM,
            _query("since", {"$ref": "#/components/schemas/MessageId"}, "messages after this id"),
            _query("before", {"$ref": "#/components/schemas/MessageId"}, "messages before this id"),
            _query("limit", {**_LIMIT, "default": 50}, "at most this many"),
        ),
    },
    "/api/rooms/{room}/messages/{id}": {
        "delete": _op(
            "Delete a message; members get a deleted event",
            _ok("200", "Deleted", "deleted", ("400", "404", "503")),
            _ROOM,
            _MESSAGE_ID,
        )
    },
    "/api/rooms/{room}/members": {
        "get": _op(
            "Who is in the room now, on every process", _ok("200", "Members", "the members", ("400", "503")), _ROOM
        )
    },
    "/api/rooms": {
        "get": _op(
            "Rooms with members now, by name",
            _ok("200", "Rooms", "a page", ("400", "503")),
            _query("cursor", _STRING, "the next of the previous page"),
            _query("limit", {**_LIMIT, "default": 100}, "at most this many"),
        )
    },
    "/api/users/{user}/disconnect": {
        "post": _post(
            "Close the user's connections (4003), optionally banning them",
            "Disconnect",
            ("200", "Disconnected", "done"),
            _USER,
        )
    },
    "/api/rooms/{room}/bans": {
        "get": _listing("Bans in force in the room, those in every room included", "bans", ("400",), _ROOM)
    },
    "/api/rooms/{room}/bans/{user}": {"delete": _lift("Lift a ban from the room", _ROOM, _USER)},
    "/api/bans": {"get": _listing("Bans in every room", "bans", ())},
    "/api/bans/{user}": {"delete": _lift("Lift a ban from every room", _USER)},
    "/api/rooms/{room}/mutes": {
        "get": _listing("Mutes in force in the room", "mutes", ("400",), _ROOM),
        "post": _post(
            "Mute a user in the room: they read, their messages get the error muted",
            "Mute",
            ("201", "Sanction", "muted"),
            _ROOM,
        ),
    },
    "/api/rooms/{room}/mutes/{user}": {"delete": _lift("Lift a mute", _ROOM, _USER)},
    "/api/cluster": {
        "get": _op(
            "The processes (readiness, load, lag read from Redis) and the busiest rooms, as the admin page shows them",
            _ok("200", "Cluster", "the cluster now", ("400", "503")),
            _query("rooms", {"type": "integer", "minimum": 1, "maximum": 10, "default": 10}, "at most this many rooms"),
        )
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Room chat server API",
        "version": "1",
        "description": "The host application's backend publishes, reads and moderates rooms. "
        f"Bodies at most {MAX_BODY_BYTES} bytes; every error is {{error, detail}}.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
        "responses": {
            "Error": {
                "description": "refused; nothing changed",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
    },
}
_ENCODED = orjson.dumps(DOCUMENT)


class OpenApiHandler(ApiHandler):
    route = "/api/openapi.json"
    needs_key = False

    def get(self) -> None:
        self.no_body()
        self.reply(200, _ENCODED)
