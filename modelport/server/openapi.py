"""OpenAPI 3.1 built from the live endpoint registry, and the offline /docs page."""

from __future__ import annotations

from typing import Any

from modelport._version import __version__
from modelport.spec import EndpointSpec

_PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status"],
}

_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "endpoint": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled", "expired"],
        },
        "input": {"type": "object"},
        "output": {},
        "error": {"type": ["string", "null"]},
        "progress": {"type": ["object", "null"]},
        "attempts": {"type": "integer"},
        "queue_position": {"type": "integer"},
        "created_at": {"type": "number"},
        "started_at": {"type": ["number", "null"]},
        "completed_at": {"type": ["number", "null"]},
        "queue_time": {"type": ["number", "null"]},
        "compute_time": {"type": ["number", "null"]},
    },
    "required": ["id", "endpoint", "status"],
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _job(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Job"}}},
    }


def _wait_header() -> dict[str, Any]:
    return {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": (
            "`wait=N` waits up to N seconds for the result; `respond-async` answers 202 at once."
        ),
        "schema": {"type": "string"},
    }


def openapi(specs: dict[str, EndpointSpec]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/endpoints": {
            "get": {
                "summary": "List endpoints",
                "operationId": "list_endpoints",
                "responses": {"200": {"description": "The endpoints"}},
            }
        },
        "/endpoints/{name}": {
            "get": {
                "summary": "Describe one endpoint",
                "operationId": "get_endpoint",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "Schemas, limits and workers"},
                    "404": _problem("Unknown endpoint"),
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "Get a job",
                "operationId": "get_job",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    _wait_header(),
                ],
                "responses": {"200": _job("The job"), "404": _problem("Unknown job")},
            }
        },
        "/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel a job",
                "operationId": "cancel_job",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _job("The cancelled job"),
                    "404": _problem("Unknown job"),
                    "409": _problem("The job already finished"),
                },
            }
        },
        "/health/live": {
            "get": {
                "summary": "Liveness",
                "operationId": "live",
                "responses": {"200": {"description": "Alive"}},
            }
        },
        "/health/ready": {
            "get": {
                "summary": "Readiness",
                "operationId": "ready",
                "responses": {"200": {"description": "Ready"}, "503": _problem("Not ready")},
            }
        },
    }
    schemas: dict[str, Any] = {"Problem": _PROBLEM, "Job": _JOB}
    for name, spec in sorted(specs.items()):
        key = "".join(
            part.capitalize() for part in name.replace("-", "_").replace(".", "_").split("_")
        )
        schemas[f"{key}Input"] = _strip_defs(spec.input_schema(), schemas)
        schemas[f"{key}Output"] = _strip_defs(spec.output_schema(), schemas)
        job_schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Job"},
                {
                    "type": "object",
                    "properties": {"output": {"$ref": f"#/components/schemas/{key}Output"}},
                },
            ]
        }
        paths[f"/endpoints/{name}/jobs"] = {
            "post": {
                "summary": spec.title or f"Run {name}",
                "description": spec.description,
                "operationId": f"submit_{name.replace('-', '_').replace('.', '_')}",
                "tags": [name],
                "parameters": [
                    _wait_header(),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": (
                            "Makes a retry safe: the same key and input get the same job; the"
                            " same key with another input is refused (422)."
                        ),
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "input": {"$ref": f"#/components/schemas/{key}Input"}
                                },
                                "required": ["input"],
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": _job("The finished job", job_schema),
                    "202": _job("Accepted; poll the Location"),
                    "400": _problem("Malformed JSON"),
                    "413": _problem("Body too large"),
                    "422": _problem("Invalid input"),
                    "429": _problem("Queue full"),
                    "503": _problem("No worker can run it (its setup failed), or no store"),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelport", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _strip_defs(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's local ``$defs`` into components so references resolve."""
    schema = dict(schema)
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    relinked: dict[str, Any] = _relink(schema)
    return relinked


def _relink(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _relink(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_relink(v) for v in node]
    return node


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>modelport API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
</script>
</body>
</html>
"""
