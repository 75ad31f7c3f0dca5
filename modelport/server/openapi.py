"""The OpenAPI 3.1 document, built from the live endpoint registry.

Every route the server answers is here (the pages ``/docs`` and ``/redoc`` aside), with
its request and response schemas. Request schemas come from the same pydantic models
that validate the requests; answers are described by :mod:`modelport.server.schemas`.
Each endpoint's submit route carries a realistic example body (:mod:`.examples`).
"""

from __future__ import annotations

import re
from typing import Any, get_args

import pydantic
from prometheus_client import CONTENT_TYPE_LATEST

from modelport import wire
from modelport._version import __version__
from modelport.media.files import single_output
from modelport.media.options import MIME_TYPES
from modelport.server import schemas
from modelport.server.admin import admin_paths
from modelport.server.auth import API_KEY, area_of
from modelport.server.conversations import conversation_paths
from modelport.server.examples import input_example

# The request models are the routes' own validators, so the documented bodies are exactly
# what is accepted.
from modelport.server.openai import _ChatRequest, _EmbeddingRequest
from modelport.server.streaming import MAX_EVENT_ID
from modelport.spec import EndpointSpec, media_field

_REF = "#/components/schemas/"
_RENAMED = {
    "_ChatRequest": "ChatCompletionRequest",
    "_Message": "ChatMessage",
    "_EmbeddingRequest": "EmbeddingRequest",
    "Registration": "WorkerRegistration",
    "Registered": "WorkerRegistered",
    "Result": "WorkerResult",
}
_WORKER_AUTH = "workerToken"
_OPENAI = "openai"
_DESCRIPTION = """\
Each endpoint takes its inputs under `"input"`: `POST /endpoints/{name}/jobs` with
`{"input": {...}}`. The request waits for the result (up to `Prefer: wait=N` seconds,
30 by default) and answers `200` with the finished job, or `202` with a `Location` to
poll. `Accept: text/event-stream` or `application/jsonl` streams the job's events instead.

Errors are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`,
and for invalid input an `errors` list naming each field. Every answer carries an
`X-Request-ID`.

Chat and embedding endpoints are also served in OpenAI's shape under `/v1`. Remote
workers use the `workers` routes with the server's worker token.
"""


class _Components:
    """Collects named schemas; pydantic's local ``$defs`` become components."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def model(self, model: type[Any], name: str | None = None) -> dict[str, Any]:
        """A ``$ref`` to the schema of a pydantic model or a dataclass (nested ones added)."""
        schema = pydantic.TypeAdapter(model).json_schema(ref_template=_REF + "{model}")
        key = name or _RENAMED.get(model.__name__, model.__name__)
        return self.add(key, schema, {model.__name__: key})

    def add(self, key: str, schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
        """Add ``schema`` as ``key``, or as ``key2``... if a different schema has that name
        (``names`` renames its ``$defs``); a ``$ref`` to it."""
        schema = dict(schema)
        defs: dict[str, Any] = schema.pop("$defs", {})
        names = {**{n: _RENAMED.get(n, n) for n in defs}, **names}
        for def_name, sub in defs.items():
            names[def_name] = self._free(names[def_name], _relink(sub, names))
        for def_name, sub in defs.items():
            self.schemas[names[def_name]] = {**_relink(sub, names), "title": names[def_name]}
        body = _relink(schema, names)
        key = self._free(key, body)
        self.schemas[key] = {**body, "title": key} if body else body
        return {"$ref": _REF + key}

    def _free(self, key: str, body: dict[str, Any]) -> str:
        base, n = key, 1
        while key in self.schemas and _untitled(self.schemas[key]) != _untitled(body):
            n += 1
            key = f"{base}{n}"
        return key


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def _relink(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                name = v.rsplit("/", 1)[-1]
                out[k] = _REF + names.get(name, name)
            else:
                out[k] = _relink(v, names)
        return out
    if isinstance(node, list):
        return [_relink(v, names) for v in node]
    return node


def _key(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[-_.]", name) if p)


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _problem(description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": _REF + "Problem"}}},
        **extra,
    }


def _openai_error(description: str) -> dict[str, Any]:
    return _json({"$ref": _REF + "OpenAIError"}, description)


def _body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def _param(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"}


def at_most(limit: int) -> str:
    """A pattern of the whole numbers from 0 to ``limit`` (leading zeros allowed), so the
    document says exactly which ids the server takes."""
    digits = str(limit)
    parts = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, d in enumerate(digits):
        low = 1 if i == 0 and len(digits) > 1 else 0
        if int(d) > low:
            rest = len(digits) - i - 1
            parts.append(
                digits[:i] + f"[{low}-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    parts.append(digits)
    return "^0*(" + "|".join(parts) + ")$"


EVENT_ID_PATTERN = at_most(MAX_EVENT_ID)


_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
_STREAMS = {
    "text/event-stream": {
        "schema": {  # one event, as tools read a stream (and OpenAPI 3.2's itemSchema)
            "type": "object",
            "description": "One event: its `event` name, its `data` as JSON, and for stored "
            "events their `id` (resume after it with Last-Event-ID).",
            "required": ["event", "data"],
            "properties": {
                "event": {
                    "enum": list(get_args(schemas.StreamEvent.model_fields["event"].annotation))
                },
                "data": {"type": "string", "contentMediaType": "application/json"},
                "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
            },
        },
        "example": 'id: 0\nevent: queued\ndata: {"id": "...", "queue_position": 0}\n\n',
    },
    "application/jsonl": {
        "schema": {"$ref": _REF + "StreamEvent"},
        "example": {"id": 0, "event": "queued", "data": {"id": "...", "queue_position": 0}},
    },
}
_BAD_BODY = {
    "400": _problem("The body is not a JSON object"),
    "413": _problem("The body is over the server's limit"),
    "422": _problem("Invalid input: each field and the rule it broke"),
}
_BAD_WORKER = {
    "401": _problem("No or wrong worker token", headers={"WWW-Authenticate": {"schema": {}}}),
    "404": _problem("Unknown worker: register first"),
}


def _parameters(specs: dict[str, EndpointSpec]) -> dict[str, Any]:
    first = next(iter(sorted(specs)), "iris")
    return {
        "EndpointName": {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": first,
        },
        "JobId": {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        "WorkerId": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        },
        "PreferWait": {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "`wait=N`: wait up to N seconds for the result (RFC 7240); "
            "`respond-async`: answer 202 at once.",
            "schema": {"type": "string", "examples": ["wait=10", "respond-async"]},
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": (
                "A retry with the same key and input returns the same job instead of a new"
                " one; the same key with another input is refused (422)."
            ),
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "LastEventId": {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": (
                "Resume after this event id (what an EventSource sends itself): a whole number"
                " from 0 to 9223372036854775807."
            ),
            "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
        },
        "After": {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "Resume after this event id, as `Last-Event-ID` does (0 to 2**63 - 1).",
            "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
        },
    }


def openapi(
    specs: dict[str, EndpointSpec],
    *,
    root_path: str = "",
    auth: str = "none",
    metrics_auth: bool = False,
) -> dict[str, Any]:
    """The OpenAPI document of a server serving ``specs`` (``auth="keys"``: with API keys
    required where the server requires them)."""
    c = _Components()
    for model in (
        schemas.Problem,
        schemas.Job,
        schemas.StreamEvent,
        schemas.EndpointSummary,
        schemas.EndpointDetail,
        schemas.EndpointDeletion,
        schemas.LogLine,
        schemas.EndpointMetadata,
        schemas.LogsDeleted,
        schemas.Live,
        schemas.Ready,
        schemas.Index,
        schemas.OpenAIError,
    ):
        c.model(model)
    paths: dict[str, Any] = {}
    names = sorted(specs)
    for name in names:
        paths[f"/endpoints/{name}/jobs"] = {"post": _submit(c, specs[name])}
    if not names:
        paths["/endpoints/{name}/jobs"] = {"post": _submit(c, None)}
    paths.update(_client_paths(c))
    paths.update(_openai_paths(c, specs))
    paths.update(_worker_paths(c, specs))
    paths.update(admin_paths(c))
    paths.update(conversation_paths(c))
    paths.update(_server_paths())
    _secure(paths, auth, metrics_auth)
    tags = {n: specs[n].description or specs[n].title for n in names}
    for tag, description in (
        ("jobs", "Follow, stream and cancel jobs"),
        ("endpoints", "What is served, with schemas and workers"),
        (_OPENAI, "OpenAI-compatible routes over chat and embeddings"),
        ("health", "Liveness, readiness and metrics"),
        ("workers", "For remote workers: needs the worker token or a worker key"),
        ("keys", "API keys (admin keys only) and browser sessions"),
        ("admin", "The admin dashboard's data (admin keys or admin sessions only)"),
        ("conversations", "Chat conversations kept for a browser's key"),
        ("server", "This index and this document"),
    ):
        tags.setdefault(tag, description)  # an endpoint named "jobs" shares that tag
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelport", "version": __version__, "description": _DESCRIPTION},
        "tags": [{"name": k, "description": v} for k, v in tags.items()],
        "paths": paths,
        "components": {
            "schemas": c.schemas,
            "parameters": _parameters(specs),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer"},
                },
                "X-Request-ID": {
                    "description": "The request's id (the client's own, if it sent a sane one)",
                    "schema": {"type": "string"},
                },
            },
            "securitySchemes": {
                API_KEY: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`modelport keys create`) or a session token"
                    " (`POST /sessions`)",
                },
                _WORKER_AUTH: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's worker token (`modelport serve --worker-token`)"
                    " or a worker key",
                },
            },
        },
    }
    if root_path:
        doc["servers"] = [{"url": root_path}]
    request_id = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    for item in paths.values():
        for operation in item.values():
            operation["responses"] = {
                status: {**r, "headers": {**r.get("headers", {}), **request_id}}
                for status, r in operation["responses"].items()
            }
    return doc


def _secure(paths: dict[str, Any], auth: str, metrics_auth: bool) -> None:
    """Mark the operations that need an API key, with the answers to a missing or wrong
    one."""
    for path, item in paths.items():
        area = area_of(path)
        if area == "workers":  # a client or admin key there
            for operation in item.values():
                operation["responses"].setdefault(
                    "403", _problem("A client or admin key: not accepted on worker routes")
                )
        needed = area in ("keys", "sessions", "admin") or (
            auth == "keys" and (area == "client" or (area == "metrics" and metrics_auth))
        )
        for operation in item.values():
            if not needed:
                continue
            operation["security"] = [{API_KEY: []}]
            refusals = {
                "401": _problem(
                    "No key, or one unknown, revoked or expired",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
                ),
                "403": _problem("The key may not use this route or endpoint"),
            }
            if path.startswith("/v1/"):
                refusals = {s: _openai_error(r["description"]) for s, r in refusals.items()}
            for status, answer in refusals.items():
                operation["responses"].setdefault(status, answer)


def _submit(c: _Components, spec: EndpointSpec | None) -> dict[str, Any]:
    if spec is None:  # no endpoint served yet: the route, described generically
        return {
            "summary": "Submit a job",
            "operationId": "submit",
            "tags": ["jobs"],
            "parameters": [_param("EndpointName"), _param("PreferWait"), _param("IdempotencyKey")],
            "requestBody": _body({"type": "object", "properties": {"input": {"type": "object"}}}),
            "responses": {
                "404": _problem("No endpoint of that name"),
            },
        }
    key = _key(spec.name)
    inputs = c.add(f"{key}Input", spec.input_schema(), {})
    output = c.add(f"{key}Output", spec.output_schema(), {})
    request = {
        "type": "object",
        "properties": {"input": inputs},
        "required": ["input"] if any(f.required for f in spec.inputs.values()) else [],
        "additionalProperties": False,
    }
    request_ref = c.add(f"{key}Request", request, {})
    job = {"allOf": [{"$ref": _REF + "Job"}, {"properties": {"output": output}}]}
    example = input_example(spec)
    description = spec.description + _model_card(spec)
    if spec.kind in ("chat", "embedding"):
        description += f"\n\nAlso served in OpenAI's shape: see the `{_OPENAI}` routes."
    body = _body(request_ref, None if example is None else {"input": example})
    body["content"].update(_uploads(spec))
    return {
        "summary": spec.title or f"Submit a job to {spec.name}",
        "description": description.strip(),
        "operationId": f"submit_{spec.name}",  # endpoint names are unique and URL-safe
        "tags": [spec.name],
        "parameters": [_param("PreferWait"), _param("IdempotencyKey")],
        "requestBody": body,
        "responses": {
            "200": {
                "description": "The finished job; or its events, as the Accept header asked"
                + ("; or the output file itself, with Accept: its type" if _file_out(spec) else ""),
                "content": {"application/json": {"schema": job}, **_STREAMS, **_file_out(spec)},
            },
            "202": _json(
                {"$ref": _REF + "Job"},
                "Accepted and not finished yet: poll the Location",
                headers={"Location": {"schema": {"type": "string"}}},
            ),
            **_BAD_BODY,
            "404": _problem("No endpoint of that name (any more)"),
            "429": _problem("The endpoint's queue is full", headers=_RETRY_AFTER),
            "503": _problem(
                "The store is unavailable, or no worker can run the endpoint (its model's"
                " setup() failed; the endpoint's state says why)",
                headers=_RETRY_AFTER,
            ),
        },
    }


def _model_card(spec: EndpointSpec) -> str:
    """What the model declares (``[metadata]``), as Markdown for the endpoint's description."""
    meta = spec.metadata
    if not meta:
        return ""
    lines = [f"\n\n**Model** version {spec.version}"]
    labels = meta.get("labels")
    if isinstance(labels, list) and labels:
        lines.append("- labels: " + ", ".join(f"`{label}`" for label in labels[:50]))
    for key, title in (("metrics", "metrics"), ("training_args", "training arguments")):
        value = meta.get(key)
        if isinstance(value, dict) and value:
            lines.append(f"- {title}: " + ", ".join(f"`{k}` = {v}" for k, v in value.items()))
    rest = sorted(set(meta) - {"labels", "metrics", "training_args"})
    for key in rest:
        lines.append(f"- {key}: {meta[key]}")
    lines.append(f"\n`GET /endpoints/{spec.name}/metadata` has it all, with each worker's.")
    return "\n".join(lines)


def _uploads(spec: EndpointSpec) -> dict[str, Any]:
    """Media inputs may also come as a multipart form (files for media, text for the rest)
    and, for one media input, as the raw file with the other inputs in the query string."""
    if not spec.media_inputs:
        return {}
    properties: dict[str, Any] = {}
    for name, f in spec.inputs.items():
        media = media_field(f)
        if media is None:
            properties[name] = {"type": "string", "description": f.description or f.type}
            continue
        binary = {"type": "string", "format": "binary", "contentMediaType": _any(media.type)}
        properties[name] = {"type": "array", "items": binary} if f.type == "list" else binary
    form = {
        "type": "object",
        "properties": properties,
        "required": [k for k, f in spec.inputs.items() if f.required],
    }
    out: dict[str, Any] = {"multipart/form-data": {"schema": form}}
    singles = [f for f in spec.media_inputs.values() if f.type != "list"]
    if len(spec.media_inputs) == 1 and singles:
        out[_any(singles[0].type)] = {"schema": {"type": "string", "format": "binary"}}
    return out


def _any(kind: str) -> str:
    return "application/octet-stream" if kind == "bytes" else f"{kind}/*"


def _file_out(spec: EndpointSpec) -> dict[str, Any]:
    name = single_output(spec)
    if name is None:
        return {}
    f = spec.output if name == "output" else (spec.outputs or {})[name]
    assert f is not None
    default = {"image": "PNG", "audio": "WAV", "video": "MP4"}.get(f.type)
    fmt = f.format[0] if f.format else default
    mime = MIME_TYPES[fmt] if fmt is not None else "application/octet-stream"
    return {mime: {"schema": {"type": "string", "format": "binary"}}}


def _client_paths(c: _Components) -> dict[str, Any]:
    job = {"$ref": _REF + "Job"}
    return {
        "/endpoints": {
            "get": {
                "summary": "List endpoints",
                "operationId": "list_endpoints",
                "tags": ["endpoints"],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": _REF + "EndpointSummary"}},
                        "Every endpoint, with workers online and queue depth",
                    )
                },
            }
        },
        "/endpoints/{name}": {
            "get": {
                "summary": "Describe one endpoint",
                "operationId": "get_endpoint",
                "tags": ["endpoints"],
                "parameters": [_param("EndpointName")],
                "responses": {
                    "200": _json(
                        {"$ref": _REF + "EndpointDetail"}, "Its schemas, limits and workers"
                    ),
                    "404": _problem("No endpoint of that name"),
                },
            },
            **_endpoint_admin(),
        },
        "/endpoints/{name}/metadata": {
            "get": {
                "summary": "What an endpoint's model declares",
                "description": "Its version, description and `[metadata]` (training"
                " arguments, metrics, labels...), and what each worker's model says of itself"
                " (`Model.info()`), with whether the workers differ.",
                "operationId": "endpoint_metadata",
                "tags": ["endpoints"],
                "parameters": [_param("EndpointName")],
                "responses": {
                    "200": _json({"$ref": _REF + "EndpointMetadata"}, "The model's metadata"),
                    "404": _problem("No endpoint of that name"),
                },
            }
        },
        "/endpoints/{name}/disable": {
            "post": {
                "summary": "Disable an endpoint",
                "description": "Submits answer 503 with the reason until it is enabled again;"
                " queued jobs wait. Needs an admin key when the server uses keys.",
                "operationId": "disable_endpoint",
                "tags": ["endpoints"],
                "parameters": [_param("EndpointName")],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"reason": {"type": "string", "maxLength": 500}},
                            },
                            "example": {"reason": "retraining until 14:00"},
                        }
                    },
                },
                "responses": {
                    "200": _json({"$ref": _REF + "EndpointDetail"}, "The endpoint, disabled"),
                    **_ADMIN_REFUSALS,
                    "422": _problem("The reason is not a text of at most 500 characters"),
                },
            }
        },
        "/endpoints/{name}/enable": {
            "post": {
                "summary": "Enable a disabled endpoint",
                "description": "Its queued jobs run again. Needs an admin key when the server"
                " uses keys.",
                "operationId": "enable_endpoint",
                "tags": ["endpoints"],
                "parameters": [_param("EndpointName")],
                "responses": {
                    "200": _json({"$ref": _REF + "EndpointDetail"}, "The endpoint, enabled"),
                    **_ADMIN_REFUSALS,
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "Get a job",
                "description": "With `Prefer: wait=N`, waits up to N seconds for it to finish.",
                "operationId": "get_job",
                "tags": ["jobs"],
                "parameters": [_param("JobId"), _param("PreferWait")],
                "responses": {"200": _json(job, "The job"), "404": _problem("No such job")},
            }
        },
        "/jobs/{id}/events": {
            "get": {
                "summary": "Stream a job's events",
                "description": "Server-Sent Events (or JSON lines with `Accept: "
                "application/jsonl`): `queued`, `started`, `progress`, `output` chunks, `log`, "
                "then one of `succeeded`, `failed`, `cancelled`, `expired` carrying the job. "
                "Resumable with `Last-Event-ID`.",
                "operationId": "job_events",
                "tags": ["jobs"],
                "parameters": [_param("JobId"), _param("LastEventId"), _param("After")],
                "responses": {
                    "200": {"description": "The events, until the final one", "content": _STREAMS},
                    "400": _problem("The resume id is not a non-negative integer"),
                    "404": _problem("No such job"),
                },
            }
        },
        "/jobs/{id}/logs": {
            "get": {
                "summary": "A job's log",
                "description": "What its model printed (stdout, stderr) and logged while it"
                " worked on the job, as long as its endpoint's log keeps it. `Accept:"
                " text/plain` for one line each.",
                "operationId": "job_logs",
                "tags": ["jobs"],
                "parameters": [_param("JobId"), *_LOG_PARAMS],
                "responses": {
                    "200": _LOGS,
                    "400": _problem("A query parameter is wrong (it is named)"),
                    "404": _problem("No such job"),
                },
            }
        },
        "/endpoints/{name}/logs": {
            "get": {
                "summary": "An endpoint's log",
                "description": "What its models printed and logged, oldest first, bounded in"
                " lines, bytes and age (`--log-max-entries`, `--log-max-bytes`,"
                " `--log-max-age`). `Accept: text/plain` for one line each. Needs an admin key"
                " when the server uses keys (the lines come from every caller's jobs).",
                "operationId": "endpoint_logs",
                "tags": ["endpoints"],
                "parameters": [
                    _param("EndpointName"),
                    {
                        "name": "job",
                        "in": "query",
                        "required": False,
                        "description": "Only this job's lines",
                        "schema": {"type": "string"},
                    },
                    *_LOG_PARAMS,
                ],
                "responses": {
                    "200": _LOGS,
                    "400": _problem("A query parameter is wrong (it is named)"),
                    "403": _problem("Not an admin key"),
                    "404": _problem("No endpoint of that name"),
                },
            },
            "delete": {
                "summary": "Delete an endpoint's log",
                "description": "Needs an admin key when the server uses keys.",
                "operationId": "delete_endpoint_logs",
                "tags": ["endpoints"],
                "parameters": [_param("EndpointName")],
                "responses": {
                    "200": _json({"$ref": _REF + "LogsDeleted"}, "How many lines were deleted"),
                    "403": _problem("Not an admin key"),
                    "404": _problem("No endpoint of that name"),
                },
            },
        },
        "/jobs/{id}/files/{name}": {
            "get": {
                "summary": "Get a media file of a job",
                "description": "One media value of the job's output as a file with its content"
                " type: `image` for an output field, `images.0` for an item of a list, `output`"
                " for an endpoint whose whole output is media, `preview` for the latest"
                " progress preview.",
                "operationId": "job_file",
                "tags": ["jobs"],
                "parameters": [
                    _param("JobId"),
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "audio/*": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "404": _problem("No such job, or no such file in it"),
                },
            }
        },
        "/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel a job",
                "description": "A running job's worker is told to stop.",
                "operationId": "cancel_job",
                "tags": ["jobs"],
                "parameters": [_param("JobId")],
                "responses": {
                    "200": _json(job, "The cancelled job"),
                    "404": _problem("No such job"),
                    "409": _problem("The job already finished"),
                },
            }
        },
    }


_LOG_PARAMS = [
    {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "Only lines written at this Unix time or later",
        "schema": {"type": "number"},
    },
    {
        "name": "level",
        "in": "query",
        "required": False,
        "description": "Only lines of this level or a higher one",
        "schema": {"type": "string", "enum": ["debug", "info", "warning", "error", "critical"]},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "The newest lines, at most this many (1000 by default)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
    },
]
_LOGS = {
    "description": "The lines, oldest first",
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"$ref": _REF + "LogLine"}}},
        "text/plain": {
            "schema": {"type": "string"},
            "example": "2026-01-02T03:04:05.678Z INFO     0190c5... stdout: loading weights\n",
        },
    },
}
ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""The names ``PUT /endpoints/{name}`` accepts."""
_ADMIN_REFUSALS = {
    "400": _problem("The body is not JSON"),
    "403": _problem("Not an admin key"),
    "404": _problem("No endpoint of that name"),
    "413": _problem("The body is over the server's limit"),
}
_SPEC_EXAMPLE = """\
[endpoint]
description = "Reverses a text"
[inputs]
text = { type = "string", required = true }
[outputs]
text = { type = "string" }
"""


def _endpoint_admin() -> dict[str, Any]:
    """``PUT`` and ``DELETE /endpoints/{name}``: endpoints at run time."""
    detail = {"$ref": _REF + "EndpointDetail"}
    deletion = {"$ref": _REF + "EndpointDeletion"}
    return {
        "put": {
            "summary": "Add or replace an endpoint",
            "description": "The spec as a TOML file (`content-type: application/toml`, the"
            " sections of a `--config` file) or as JSON in the same shape. A new name is added"
            " (201); a spec that differs from the endpoint's becomes its next revision (200):"
            " jobs already queued keep the revision their input was validated against and run"
            " only on workers of it (or fail saying so once none is left). Workers that bring"
            " the spec serve it; `GET /endpoints`, `/openapi.json` and `/docs` show it at once"
            " on every server sharing the store. Needs an admin key when the server uses keys.",
            "operationId": "put_endpoint",
            "tags": ["endpoints"],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "Letters, digits, '-', '_' and '.'",
                    "schema": {"type": "string", "pattern": ENDPOINT_NAME, "maxLength": 100},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/toml": {
                        "schema": {"type": "string"},
                        "example": _SPEC_EXAMPLE,
                    },
                    "application/json": {
                        "schema": {"type": "object"},
                        "example": {
                            "endpoint": {"description": "Reverses a text"},
                            "inputs": {"text": {"type": "string", "required": True}},
                        },
                    },
                },
            },
            "responses": {
                "200": _json(detail, "The endpoint, replaced (or unchanged: the same spec)"),
                "201": _json(detail, "The endpoint, added"),
                "400": _problem("Not TOML or JSON, or a name that is not letters and digits"),
                "403": _problem("Not an admin key"),
                "413": _problem("The body is over the server's limit"),
                "422": _problem("The spec is wrong: every key at fault, with the reason"),
            },
        },
        "delete": {
            "summary": "Delete an endpoint",
            "description": "Submits answer 503 at once; queued and running jobs finish first"
            " (202 until they have), or with `drain=false` are cancelled. Then the endpoint is"
            " gone (200), and a worker bringing its spec is refused until it is put again."
            " Needs an admin key when the server uses keys.",
            "operationId": "delete_endpoint",
            "tags": ["endpoints"],
            "parameters": [
                _param("EndpointName"),
                {
                    "name": "drain",
                    "in": "query",
                    "required": False,
                    "description": "`false`: cancel the queued and running jobs now",
                    "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
                },
            ],
            "responses": {
                "200": _json(deletion, "The endpoint is deleted"),
                "202": _json(deletion, "Its jobs are finishing; then it is deleted"),
                "400": _problem("drain is not true or false"),
                "403": _problem("Not an admin key"),
                "404": _problem("No endpoint of that name"),
            },
        },
    }


def _server_paths() -> dict[str, Any]:
    return {
        "/health/live": {
            "get": {
                "summary": "Liveness",
                "operationId": "live",
                "tags": ["health"],
                "responses": {"200": _json({"$ref": _REF + "Live"}, "The process answers")},
            }
        },
        "/health/ready": {
            "get": {
                "summary": "Readiness",
                "description": "Ready once the store answers and every local model is set up.",
                "operationId": "ready",
                "tags": ["health"],
                "responses": {
                    "200": _json({"$ref": _REF + "Ready"}, "Ready, with workers per endpoint"),
                    "503": _problem(
                        "Not ready: the store does not answer, a model is still loading, "
                        "or its setup() failed",
                        headers=_RETRY_AFTER,
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "description": "Jobs by endpoint and outcome, queue depths, latencies, workers.",
                "operationId": "metrics",
                "tags": ["health"],
                "responses": {
                    "200": {
                        "description": "The Prometheus text format",
                        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/": {
            "get": {
                "summary": "Index",
                "description": "An HTML page for a browser (`Accept: text/html`), JSON otherwise.",
                "operationId": "index",
                "tags": ["server"],
                "responses": {
                    "200": {
                        "description": "The endpoints served, and links to docs and health",
                        "content": {
                            "application/json": {"schema": {"$ref": _REF + "Index"}},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["server"],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }


def _openai_paths(c: _Components, specs: dict[str, EndpointSpec]) -> dict[str, Any]:
    chat = next((s for _, s in sorted(specs.items()) if s.kind == "chat"), None)
    embedding = next((s for _, s in sorted(specs.items()) if s.kind == "embedding"), None)
    chat_example = {
        "model": chat.name if chat else "textgen",
        "messages": [{"role": "user", "content": "Tell me about the standard library."}],
        "max_tokens": 20,
    }
    embedding_example = {
        "model": embedding.name if embedding else "all-minilm-l6-v2",
        "input": ["The quick brown fox jumps over the lazy dog."],
    }
    errors = {
        "400": _openai_error("Invalid request, or input the model refuses"),
        "404": _openai_error("No model of that name and kind"),
        "413": _openai_error("The body is over the server's limit"),
        "502": _openai_error("The model failed"),
        "504": _openai_error("The model did not answer in time"),
    }
    served = ", ".join(sorted(s.name for s in specs.values() if s.kind != "predict")) or "none"
    return {
        "/v1/models": {
            "get": {
                "summary": "List models",
                "description": f"The chat and embedding endpoints (here: {served}).",
                "operationId": "openai_models",
                "tags": [_OPENAI],
                "responses": {"200": _json(c.model(schemas.ModelList), "The models")},
            }
        },
        "/v1/chat/completions": {
            "post": {
                "summary": "Chat completion",
                "description": 'Runs a `chat` endpoint. With `"stream": true`, answers '
                "`chat.completion.chunk` events and `data: [DONE]`.",
                "operationId": "openai_chat",
                "tags": [_OPENAI],
                "requestBody": _body(c.model(_ChatRequest), chat_example),
                "responses": {
                    "200": {
                        "description": "The completion, or its chunks as Server-Sent Events",
                        "content": {
                            "application/json": {"schema": c.model(schemas.ChatCompletion)},
                            "text/event-stream": {
                                "schema": {  # one event: a chunk's JSON, or [DONE]
                                    "type": "object",
                                    "required": ["data"],
                                    "properties": {"data": {"type": "string"}},
                                }
                            },
                        },
                    },
                    **errors,
                },
            }
        },
        "/v1/embeddings": {
            "post": {
                "summary": "Embeddings",
                "description": "Runs an `embedding` endpoint, one job per text (batched).",
                "operationId": "openai_embeddings",
                "tags": [_OPENAI],
                "requestBody": _body(c.model(_EmbeddingRequest), embedding_example),
                "responses": {
                    "200": _json(c.model(schemas.EmbeddingList), "One vector per text"),
                    **errors,
                },
            }
        },
    }


def _worker_paths(c: _Components, specs: dict[str, EndpointSpec]) -> dict[str, Any]:
    first = next((specs[n] for n in sorted(specs)), None)
    endpoint = first.name if first else "iris"
    job_id = "0c5a8c5e2b1d4f6e9a7b3c1d2e4f6a8b"
    auth: list[dict[str, list[str]]] = [{_WORKER_AUTH: []}]
    registration = {
        "name": "gpu-box-1",
        "endpoints": [first.to_dict()] if first else [{"name": endpoint}],
        "max_batch_size": 8,
    }
    results = {"results": [{"job_id": job_id, "endpoint": endpoint, "attempt": 1, "output": {}}]}
    return {
        "/workers": {
            "post": {
                "summary": "Register a worker",
                "description": "The worker lists the specs it serves, each as `GET "
                "/endpoints/{name}` shows it under `spec`; each must match the server's spec "
                "of that endpoint, or is added when the server has none. A spec the server "
                "cannot read is refused with 422 naming the rule it broke.",
                "operationId": "register_worker",
                "tags": ["workers"],
                "security": auth,
                "requestBody": _body(c.model(wire.Registration), registration),
                "responses": {
                    "201": _json(c.model(wire.Registered), "Registered"),
                    **_BAD_BODY,
                    "401": _BAD_WORKER["401"],
                    "409": _problem("A spec differs from the server's, naming each difference"),
                },
            }
        },
        "/workers/{id}/lease": {
            "post": {
                "summary": "Lease jobs (long poll)",
                "description": "Waits up to `wait` seconds for a first job, then up to the "
                "endpoint's batch window to fill `max_jobs`. `results` of the previous batch "
                "may come along.",
                "operationId": "lease_jobs",
                "tags": ["workers"],
                "security": auth,
                "parameters": [_param("WorkerId")],
                "requestBody": _body(c.model(wire.LeaseRequest), {"max_jobs": 8, "wait": 20}),
                "responses": {
                    "200": _json(c.model(wire.LeaseAnswer), "The leased jobs (maybe none)"),
                    **_BAD_BODY,
                    **_BAD_WORKER,
                },
            }
        },
        "/workers/{id}/events": {
            "post": {
                "summary": "Report progress, output chunks, logs and heartbeats",
                "operationId": "worker_events",
                "tags": ["workers"],
                "security": auth,
                "parameters": [_param("WorkerId")],
                "requestBody": _body(
                    c.model(wire.EventsRequest),
                    {
                        "events": [
                            {
                                "job_id": job_id,
                                "type": "progress",
                                "data": {"fraction": 0.5, "message": "halfway", "data": {}},
                            },
                            {"job_id": job_id, "type": "heartbeat"},
                        ]
                    },
                ),
                "responses": {
                    "200": _json(c.model(wire.EventsAnswer), "Leases still held"),
                    **_BAD_BODY,
                    **_BAD_WORKER,
                },
            }
        },
        "/workers/{id}/results": {
            "post": {
                "summary": "Report results",
                "operationId": "worker_results",
                "tags": ["workers"],
                "security": auth,
                "parameters": [_param("WorkerId")],
                "requestBody": _body(c.model(wire.ResultsRequest), results),
                "responses": {
                    "200": _json(c.model(wire.Verdicts), "Which results were taken"),
                    **_BAD_BODY,
                    **_BAD_WORKER,
                    "409": _problem("This worker does not serve a result's endpoint"),
                },
            }
        },
        "/workers/{id}": {
            "delete": {
                "summary": "Leave",
                "description": "Unfinished leased jobs go back to the queue at once.",
                "operationId": "leave",
                "tags": ["workers"],
                "security": auth,
                "parameters": [_param("WorkerId")],
                "responses": {"204": {"description": "Gone"}, **_BAD_WORKER},
            }
        },
    }
