"""The admin routes (``/keys``) and browser sessions (``/sessions``).

The route guard in :mod:`modelport.server.auth` lets only admin keys reach ``/keys`` and
only client (and admin) keys reach ``/sessions``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import Forbidden, NotFound, invalid
from modelport.keys import WEBHOOK_SECRET_PATTERN, ApiKey, new_key, parse_duration
from modelport.server.auth import Auth, principal_of
from modelport.server.messages import json_response, read_body
from modelport.settings import Settings
from modelport.stores.base import JobStore

_Name = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@ -]+$")
]
_Endpoint = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
]
_Endpoints = Annotated[list[_Endpoint], pydantic.Field(min_length=1, max_length=1000)]
_POSITIVE = r"([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)"
_RATE = rf"^{_POSITIVE}/(s|sec|m|min|h|hour|d)$"
_QUOTA = r"^[1-9][0-9]*(/(d|day))?$"
_DURATION = rf"^{_POSITIVE}[smhd]?$"


class NewKey(pydantic.BaseModel):
    """``POST /keys``: what the key may do and how much."""

    model_config = pydantic.ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {  # an admin key is not limited to endpoints
                    "if": {"properties": {"scope": {"const": "admin"}}},
                    "then": {"properties": {"endpoints": {"type": "null"}}},
                },
                {  # a worker key submits no jobs, so it sends no webhooks
                    "if": {"properties": {"scope": {"const": "worker"}}},
                    "then": {"properties": {"webhook_secret": {"type": "null"}}},
                },
                {  # a burst is the size of a rate's bucket
                    "if": {"properties": {"burst": {"type": "integer"}}, "required": ["burst"]},
                    "then": {"properties": {"rate": {"type": "string"}}, "required": ["rate"]},
                },
            ]
        },
    )

    scope: Literal["client", "worker", "admin"]
    name: _Name | None = None
    endpoints: _Endpoints | None = pydantic.Field(
        None, description="what a client or worker key may use (not for admin keys)"
    )
    expires_in: (
        Annotated[float, pydantic.Field(gt=0, le=100 * 365 * 86_400)]
        | Annotated[str, pydantic.StringConstraints(max_length=40, pattern=_DURATION)]
        | None
    ) = pydantic.Field(None, description="seconds, or a duration such as 12h or 90d")
    rate: Annotated[str, pydantic.StringConstraints(max_length=40, pattern=_RATE)] | None = (
        pydantic.Field(None, examples=["20/s"])
    )
    burst: int | None = pydantic.Field(None, ge=1, le=1_000_000, description="needs a rate")
    quota: Annotated[str, pydantic.StringConstraints(max_length=40, pattern=_QUOTA)] | None = (
        pydantic.Field(None, examples=["10000/day"])
    )
    max_queued: int | None = pydantic.Field(None, ge=1, le=1_000_000_000)
    webhook_secret: (
        Annotated[str, pydantic.StringConstraints(pattern=WEBHOOK_SECRET_PATTERN)] | None
    ) = pydantic.Field(
        None,
        description="sign the webhooks of this key's jobs with this secret instead of the "
        "server's (whsec_ and the base64 of 24 to 768 bytes; never shown back)",
        json_schema_extra={"writeOnly": True},
    )


class NewSession(pydantic.BaseModel):
    """``POST /sessions``: the endpoints the session may use (default: all of the key's)
    and how long it lasts (default and most: the server's session TTL)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    endpoints: _Endpoints | None = None
    ttl: float | None = pydantic.Field(None, gt=0, le=30 * 86_400)


class AdminRoutes:
    def __init__(self, store: JobStore, auth: Auth, settings: Settings) -> None:
        self.store = store
        self.auth = auth
        self.settings = settings

    async def _parse(self, request: Request, model: type[pydantic.BaseModel]) -> Any:
        body = await read_body(request, 64 * 1024)
        try:
            return model.model_validate_json(body)
        except pydantic.ValidationError as e:
            raise invalid(e.errors(include_url=False, include_input=False)) from None

    async def keys(self, request: Request) -> Response:
        """``GET /keys`` and ``POST /keys``: one route, so a 405 lists both methods."""
        if request.method == "POST":
            return await self.create_key(request)
        return await self.list_keys(request)

    async def create_key(self, request: Request) -> Response:
        body: NewKey = await self._parse(request, NewKey)
        expires_at = None
        if body.expires_in is not None:
            seconds = (
                parse_duration(body.expires_in)
                if isinstance(body.expires_in, str)
                else body.expires_in
            )
            expires_at = time.time() + seconds
        key, secret = new_key(
            body.scope,
            name=body.name,
            endpoints=body.endpoints,
            expires_at=expires_at,
            rate=body.rate,
            burst=body.burst,
            quota=body.quota,
            max_queued=body.max_queued,
            webhook_secret=body.webhook_secret,
        )
        await self.store.put_key(key.to_dict())
        return json_response({**key.public(), "key": secret}, 201, {"Location": f"/keys/{key.id}"})

    async def list_keys(self, request: Request) -> Response:
        keys = [ApiKey.from_dict(k).public() for k in await self.store.list_keys()]
        return json_response(keys)

    async def delete_key(self, request: Request) -> Response:
        key_id = request.path_params["id"]
        if not await self.store.delete_key(key_id):
            raise NotFound(f"no key with id {key_id!r}")
        self.auth.forget(key_id)
        return Response(status_code=204)

    async def create_session(self, request: Request) -> Response:
        principal = principal_of(request)
        body: NewSession = await self._parse(request, NewSession)
        endpoints = principal.endpoints
        if body.endpoints is not None:
            outside = sorted(set(body.endpoints) - (endpoints or set(body.endpoints)))
            if outside:
                raise Forbidden(f"this key may not use the endpoints {', '.join(outside)}")
            endpoints = frozenset(body.endpoints)
        ttl = min(body.ttl or self.settings.session_ttl, self.settings.session_ttl)
        if principal.key is not None and principal.key.expires_at is not None:
            ttl = min(ttl, principal.key.expires_at - time.time())
        token, expires = self.auth.session_token(principal, endpoints, ttl)
        return json_response(
            {
                "token": token,
                "expires_at": expires,
                "endpoints": None if endpoints is None else sorted(endpoints),
                "key_id": principal.id,
            },
            201,
        )


class KeyInfo(pydantic.BaseModel):
    """A key as admins list it: never its secret or hash."""

    id: str
    name: str
    scope: str
    endpoints: list[str] | None
    expires_at: float | None
    rate: float | None = pydantic.Field(description="requests per second")
    burst: int | None
    quota: int | None = pydantic.Field(description="requests per UTC day")
    max_queued: int | None
    created_at: float
    last_used: float | None


class CreatedKey(KeyInfo):
    key: str = pydantic.Field(description="the secret: shown this once, kept only as a hash")


class Session(pydantic.BaseModel):
    token: str = pydantic.Field(description="send as Authorization: Bearer <token>")
    expires_at: float
    endpoints: list[str] | None
    key_id: str | None


_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _answer(description: str, schema: dict[str, Any], media: str = "application/json") -> Any:
    return {"description": description, "content": {media: {"schema": schema}}}


def _problem(description: str) -> Any:
    return _answer(description, _PROBLEM, "application/problem+json")


def admin_paths(c: Any) -> dict[str, Any]:
    """The OpenAPI paths of these routes (``c`` collects the component schemas)."""
    refused = {
        "401": _problem("No key, or one unknown, revoked or expired"),
        "403": _problem("Not an admin key"),
    }
    bad = {
        "400": _problem("The body is not JSON"),
        "413": _problem("The body is over the limit"),
        "422": _problem("A field is invalid, named in `errors`"),
    }
    example = {"scope": "client", "name": "app1", "endpoints": ["iris"], "rate": "20/s"}
    return {
        "/keys": {
            "post": {
                "summary": "Create an API key",
                "description": "The answer's `key` is the secret, shown only this once.",
                "operationId": "create_key",
                "tags": ["keys"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": c.model(NewKey), "example": example}
                    },
                },
                "responses": {
                    "201": _answer("The key, with its secret", c.model(CreatedKey)),
                    **bad,
                    **refused,
                },
            },
            "get": {
                "summary": "List API keys",
                "operationId": "list_keys",
                "tags": ["keys"],
                "responses": {
                    "200": _answer(
                        "Every key, oldest first", {"type": "array", "items": c.model(KeyInfo)}
                    ),
                    **refused,
                },
            },
        },
        "/keys/{id}": {
            "delete": {
                "summary": "Revoke an API key",
                "description": "Every server refuses it within a second.",
                "operationId": "revoke_key",
                "tags": ["keys"],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "204": {"description": "Revoked"},
                    **refused,
                    "404": _problem("No such key"),
                },
            }
        },
        "/sessions": {
            "post": {
                "summary": "Make a browser session",
                "description": "A signed token for a web page: the key's jobs, some of its "
                "endpoints, for a while (at most the server's session TTL).",
                "operationId": "create_session",
                "tags": ["keys"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": c.model(NewSession),
                            "example": {"endpoints": ["iris"], "ttl": 3600},
                        }
                    },
                },
                "responses": {
                    "201": _answer("The session", c.model(Session)),
                    **bad,
                    "401": refused["401"],
                    "403": _problem("Not a client key, or endpoints outside the key's"),
                },
            }
        },
    }
