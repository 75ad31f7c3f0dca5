"""Chat conversations kept for a browser (``/conversations``): what the chat page shows
again after a reload.

A conversation belongs to the principal that made it: the key behind the request (a
browser session shares its key's conversations, as it shares its jobs; without
``--auth keys`` every caller is anonymous and they share one list), and to one chat
endpoint the principal may use. Another key's conversation answers 404, exactly as one
that does not exist. Conversations live in the store's cache verbs, so every server of a
deployment sees them (sqlite, Redis); each lasts :data:`TTL` after its last change, and an
owner keeps at most :data:`MAX_CONVERSATIONS` (the least recently changed go first).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import Forbidden, InvalidInput, NotFound, invalid
from modelport.server.auth import Principal, principal_of
from modelport.server.messages import json_response, read_body
from modelport.spec import EndpointSpec
from modelport.stores.base import JobStore

TTL = 30 * 86_400.0
"""Seconds a conversation is kept after its last change."""
MAX_CONVERSATIONS = 100
MAX_MESSAGES = 500
MAX_BYTES = 1024 * 1024
"""The most a conversation may hold, as stored (so a key keeps at most about 100 MiB)."""

_Endpoint = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
]
_Title = Annotated[str, pydantic.StringConstraints(max_length=200)]


class Stats(pydantic.BaseModel):
    """How an answer streamed, as the page measured it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    ttft_ms: float | None = pydantic.Field(None, ge=0, le=1e9, description="time to first token")
    tokens: int | None = pydantic.Field(None, ge=0, le=10_000_000)
    tokens_per_second: float | None = pydantic.Field(None, ge=0, le=1e9)


class Message(pydantic.BaseModel):
    """One turn: a chat message, and for an answer the job that wrote it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = pydantic.Field(max_length=100_000)
    job_id: Annotated[str, pydantic.StringConstraints(max_length=100)] | None = None
    status: Literal["succeeded", "failed", "cancelled", "expired"] | None = None
    stats: Stats | None = None


class NewConversation(pydantic.BaseModel):
    """``POST /conversations``: the chat endpoint, a title (default: from the first
    message) and any messages to start with."""

    model_config = pydantic.ConfigDict(extra="forbid")

    endpoint: _Endpoint
    title: _Title | None = None
    messages: list[Message] = pydantic.Field(default_factory=list, max_length=MAX_MESSAGES)


class NewMessages(pydantic.BaseModel):
    """``POST /conversations/{id}/messages``: messages to add at the end."""

    model_config = pydantic.ConfigDict(extra="forbid")

    messages: list[Message] = pydantic.Field(min_length=1, max_length=MAX_MESSAGES)


class ConversationInfo(pydantic.BaseModel):
    """A conversation as listed: no messages."""

    id: str
    endpoint: str
    title: str
    created_at: float
    updated_at: float
    message_count: int


class Conversation(ConversationInfo):
    messages: list[Message]


def _owner(principal: Principal) -> str:
    return principal.owner or "anonymous"


def _key(owner: str, conversation_id: str) -> str:
    return f"conversation:{owner}:{conversation_id}"


def _index(owner: str) -> str:
    return f"conversations:{owner}"


def _title(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        if m["role"] == "user" and m["content"].strip():
            text = " ".join(m["content"].split())
            return text if len(text) <= 60 else text[:59] + "…"
    return "New chat"


def _info(conversation: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in conversation.items() if k != "messages"},
        "message_count": len(conversation["messages"]),
    }


class ConversationRoutes:
    def __init__(
        self, store: JobStore, find_spec: Callable[[str], Awaitable[EndpointSpec]]
    ) -> None:
        self.store = store
        self.find_spec = find_spec

    async def _parse(self, request: Request, model: type[pydantic.BaseModel]) -> Any:
        body = await read_body(request, MAX_BYTES)
        try:
            return model.model_validate_json(body)
        except pydantic.ValidationError as e:
            raise invalid(e.errors(include_url=False, include_input=False)) from None

    async def _get(self, principal: Principal, conversation_id: str) -> dict[str, Any]:
        found = await self.store.cache_get(_key(_owner(principal), conversation_id))
        if not isinstance(found, dict) or not principal.may_use(found["endpoint"]):
            raise NotFound(f"no conversation with id {conversation_id!r}")
        return found

    async def _put(self, owner: str, conversation: dict[str, Any]) -> None:
        size = len(orjson.dumps(conversation))
        if size > MAX_BYTES:
            message = (
                f"the conversation would be {size} bytes; the limit is {MAX_BYTES}: start a new one"
            )
            raise InvalidInput(
                f"messages: {message}", errors=[{"field": "messages", "message": message}]
            )
        key = _key(owner, conversation["id"])
        await self.store.cache_put(key, conversation, TTL, _index(owner), MAX_CONVERSATIONS)
        ids = await self.store.cache_get(_index(owner))
        ids = [i for i in (ids if isinstance(ids, list) else []) if i != conversation["id"]]
        ids = [conversation["id"], *ids][:MAX_CONVERSATIONS]
        await self.store.cache_put(_index(owner), ids, TTL, "conversation-lists")

    async def conversations(self, request: Request) -> Response:
        """``GET /conversations`` and ``POST /conversations``."""
        if request.method == "POST":
            return await self.create(request)
        return await self.list_all(request)

    async def list_all(self, request: Request) -> Response:
        """The caller's conversations, the most recently changed first (``?endpoint=``
        keeps one endpoint's)."""
        principal = principal_of(request)
        owner = _owner(principal)
        endpoint = request.query_params.get("endpoint")
        ids = await self.store.cache_get(_index(owner))
        found = []
        for conversation_id in ids if isinstance(ids, list) else []:
            conversation = await self.store.cache_get(_key(owner, conversation_id))
            if not isinstance(conversation, dict) or not principal.may_use(
                conversation["endpoint"]
            ):
                continue
            if endpoint is None or conversation["endpoint"] == endpoint:
                found.append(_info(conversation))
        return json_response(found)

    async def create(self, request: Request) -> Response:
        principal = principal_of(request)
        body: NewConversation = await self._parse(request, NewConversation)
        spec = await self.find_spec(body.endpoint)
        if not principal.may_use(spec.name):
            raise Forbidden(f"this key may not use the endpoint {spec.name!r}")
        if spec.kind != "chat":
            message = f"{spec.name!r} is a {spec.kind} endpoint, not a chat endpoint"
            raise InvalidInput(
                f"endpoint: {message}", errors=[{"field": "endpoint", "message": message}]
            )
        now = time.time()
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        conversation = {
            "id": secrets.token_hex(8),
            "endpoint": spec.name,
            "title": body.title or _title(messages),
            "created_at": now,
            "updated_at": now,
            "messages": messages,
        }
        await self._put(_owner(principal), conversation)
        return json_response(
            conversation, 201, {"Location": f"/conversations/{conversation['id']}"}
        )

    async def one(self, request: Request) -> Response:
        """``GET /conversations/{id}`` and ``DELETE /conversations/{id}``."""
        principal = principal_of(request)
        conversation = await self._get(principal, request.path_params["id"])
        if request.method == "DELETE":
            owner = _owner(principal)
            await self.store.cache_delete(_key(owner, conversation["id"]), _index(owner))
            ids = await self.store.cache_get(_index(owner))
            if isinstance(ids, list):
                kept = [i for i in ids if i != conversation["id"]]
                await self.store.cache_put(_index(owner), kept, TTL, "conversation-lists")
            return Response(status_code=204)
        return json_response(conversation)

    async def add_messages(self, request: Request) -> Response:
        """Add messages at the end of a conversation; answers the whole conversation."""
        principal = principal_of(request)
        body: NewMessages = await self._parse(request, NewMessages)
        conversation = await self._get(principal, request.path_params["id"])
        messages = conversation["messages"]
        if len(messages) + len(body.messages) > MAX_MESSAGES:
            message = f"a conversation holds at most {MAX_MESSAGES} messages; start a new one"
            raise InvalidInput(
                f"messages: {message}", errors=[{"field": "messages", "message": message}]
            )
        messages.extend(m.model_dump(exclude_none=True) for m in body.messages)
        if conversation["title"] == "New chat":
            conversation["title"] = _title(messages)
        conversation["updated_at"] = time.time()
        await self._put(_owner(principal), conversation)
        return json_response(conversation)


_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _answer(description: str, schema: dict[str, Any]) -> Any:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> Any:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


def conversation_paths(c: Any) -> dict[str, Any]:
    """The OpenAPI paths of these routes (``c`` collects the component schemas)."""
    tags = ["conversations"]
    one = c.model(Conversation)
    bad = {
        "400": _problem("The body is not JSON"),
        "413": _problem("The body is over the limit"),
        "422": _problem("A field is invalid, named in `errors`"),
    }
    missing = {"404": _problem("No such conversation (or another key's)")}
    path_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    turn = {"role": "user", "content": "What does asyncio do?"}
    return {
        "/conversations": {
            "get": {
                "summary": "List conversations",
                "description": "The caller's conversations, the most recently changed first.",
                "operationId": "list_conversations",
                "tags": tags,
                "parameters": [
                    {
                        "name": "endpoint",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "only this endpoint's",
                    }
                ],
                "responses": {
                    "200": _answer(
                        "Conversations, without their messages",
                        {"type": "array", "items": c.model(ConversationInfo)},
                    )
                },
            },
            "post": {
                "summary": "Start a conversation",
                "description": "A conversation with a chat endpoint, kept for the caller's key "
                f"for {int(TTL // 86_400)} days after its last change.",
                "operationId": "create_conversation",
                "tags": tags,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": c.model(NewConversation),
                            "example": {"endpoint": "textgen", "messages": [turn]},
                        }
                    },
                },
                "responses": {
                    "201": _answer("The conversation", one),
                    **bad,
                    "404": _problem("No such endpoint"),
                },
            },
        },
        "/conversations/{id}": {
            "get": {
                "summary": "Read a conversation",
                "operationId": "get_conversation",
                "tags": tags,
                "parameters": path_id,
                "responses": {"200": _answer("The conversation", one), **missing},
            },
            "delete": {
                "summary": "Delete a conversation",
                "operationId": "delete_conversation",
                "tags": tags,
                "parameters": path_id,
                "responses": {"204": {"description": "Deleted"}, **missing},
            },
        },
        "/conversations/{id}/messages": {
            "post": {
                "summary": "Add messages to a conversation",
                "operationId": "add_conversation_messages",
                "tags": tags,
                "parameters": path_id,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": c.model(NewMessages),
                            "example": {"messages": [turn]},
                        }
                    },
                },
                "responses": {"200": _answer("The conversation", one), **bad, **missing},
            }
        },
    }
