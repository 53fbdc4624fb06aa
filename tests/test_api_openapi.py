"""The API's OpenAPI document: valid OpenAPI 3.1, every route in it answers as it says, every route is in it."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from tornado.web import RequestHandler

from api.app import pattern
from tests.api_kit import api_settings, call
from tests.client import ChatClient

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def backend() -> str:
    return "memory"  # the document and the routes do not depend on the bus (tests/test_api.py runs both)


def implemented(handler: type[RequestHandler]) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def check_body(document: dict[str, Any], operation: dict[str, Any], status: int, body: Any) -> None:
    """The answer's status is documented and its body fits the documented schema."""
    answer = operation["responses"].get(str(status))
    assert answer is not None, f"status {status} not documented"
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = answer["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)


@pytest.mark.gen_test(timeout=60)
async def test_the_document_is_valid_openapi_3_1(make_server: Any) -> None:
    server = await make_server(**api_settings())
    status, document = await call(server.api.port, "GET", "/api/openapi.json", key=None)
    assert status == 200 and document["openapi"].startswith("3.1")
    validate(document)  # raises on an invalid document
    broken = {**document, "paths": {"/api/x": {"get": {"responses": {"200": {"content": 1}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)  # the validator does reject (so the check above is not vacuous)


@pytest.mark.gen_test(timeout=60)
async def test_every_route_that_answers_is_in_the_document(make_server: Any) -> None:
    server = await make_server(**api_settings())
    status, document = await call(server.api.port, "GET", "/api/openapi.json", key=None)
    documented = {pattern(path): set(ops) for path, ops in document["paths"].items()}
    rules = server.api.app.wildcard_router.rules
    # The admin page (HTML and its files) is no API route: README, "Admin page and status".
    routed = {
        r.matcher.regex.pattern: implemented(r.target) for r in rules if r.matcher.regex.pattern.startswith("/api/")
    }
    assert routed == documented
    for path, operations in document["paths"].items():  # what is not documented is refused as such
        concrete = path.replace("{room}", "lobby").replace("{user}", "nobody").replace("{id}", "1-0")
        for method in set(METHODS) - set(operations):
            status, body = await call(server.api.port, method.upper(), concrete, {})
            assert (status, body["error"]) == (405, "method_not_allowed"), (method, path)
    status, body = await call(server.api.port, "GET", "/api/nowhere")
    assert (status, body["error"]) == (404, "not_found")


@pytest.mark.gen_test(timeout=60)
async def test_every_documented_route_answers_as_documented(make_server: Any) -> None:
    server = await make_server(**api_settings())
    port = server.api.port
    status, document = await call(port, "GET", "/api/openapi.json", key=None)
    member = await ChatClient.connect(server.port, "lobby", user="ann")
    paths = document["paths"]
    answered: set[tuple[str, str]] = set()

    async def check(method: str, path: str, concrete: str, body: Any = None, expect: int = 200) -> Any:
        status, answer = await call(port, method.upper(), concrete, body)
        assert status == expect, (method, concrete, status, answer)
        check_body(document, paths[path][method], status, answer)
        answered.add((path, method))
        return answer

    published = await check("post", "/api/rooms/{room}/messages", "/api/rooms/lobby/messages", {"text": "hi"}, 201)
    await check("get", "/api/rooms/{room}/messages", "/api/rooms/lobby/messages?limit=5")
    await check("get", "/api/rooms/{room}/members", "/api/rooms/lobby/members")
    await check("get", "/api/rooms", "/api/rooms")
    await check("post", "/api/rooms/{room}/mutes", "/api/rooms/lobby/mutes", {"user": "ann", "seconds": 5}, 201)
    await check("get", "/api/rooms/{room}/mutes", "/api/rooms/lobby/mutes")
    await check("delete", "/api/rooms/{room}/mutes/{user}", "/api/rooms/lobby/mutes/ann")
    disconnect = {"room": "lobby", "ban_seconds": 5}
    await check("post", "/api/users/{user}/disconnect", "/api/users/ann/disconnect", disconnect)
    assert await member.wait_closed() == 4003
    await check("get", "/api/rooms/{room}/bans", "/api/rooms/lobby/bans")
    await check("delete", "/api/rooms/{room}/bans/{user}", "/api/rooms/lobby/bans/ann")
    await check("post", "/api/users/{user}/disconnect", "/api/users/ann/disconnect", {"ban_seconds": 5})
    await check("get", "/api/bans", "/api/bans")
    await check("delete", "/api/bans/{user}", "/api/bans/ann")
    await check("delete", "/api/rooms/{room}/messages/{id}", f"/api/rooms/lobby/messages/{published['id']}")
    await check("get", "/api/openapi.json", "/api/openapi.json")
    await check("get", "/api/cluster", "/api/cluster?rooms=3")
    # Refusals answer as documented too (the shared Error response).
    await check("get", "/api/rooms/{room}/members", "/api/rooms/not-a-room/members", expect=400)
    await check("delete", "/api/bans/{user}", "/api/bans/ann", expect=404)
    assert answered == {(path, method) for path, ops in paths.items() for method in ops}
