"""OpenAI-compatible routes over chat and embedding endpoints.

``/v1/chat/completions`` maps onto an endpoint of kind ``chat`` (its ``predict`` takes
``messages`` and optionally ``max_tokens``, ``temperature``, ``stop``, and returns or yields
text); ``/v1/embeddings`` onto one of kind ``embedding`` (one text in, one vector out, batched
by the runner). Errors have OpenAI's shape: ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any

import orjson
import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport.core import Broker
from modelport.errors import ModelportError, NotFound, field_errors
from modelport.server.auth import Auth, client_host, principal_of
from modelport.server.limits import check_shape
from modelport.server.messages import json_response as _json
from modelport.server.messages import read_body
from modelport.server.streaming import SSE, EventStream, job_events
from modelport.settings import Limits
from modelport.spec import WHOLE, EndpointSpec
from modelport.wire import INT_MAX, JobRecord, JobStatus

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "message": message,
                "type": kind or _ERROR_TYPES.get(status, _default_type(status)),
                "param": param,
                "code": code,
            }
        }


def _default_type(status: int) -> str:
    return "invalid_request_error" if status < 500 else "server_error"


def is_openai_path(path: str) -> bool:
    """Whether a request path is one of the OpenAI-compatible routes (errors in their shape)."""
    return path == "/v1" or path.startswith("/v1/")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error in OpenAI's shape, for a /v1 request refused before its handler ran."""
    return _json(OpenAIError(status, message).body, status, dict(headers or {}))


class _Message(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class _ChatRequest(pydantic.BaseModel):
    # Strict, as the native routes are: "3" is not an integer, nor "yes" a boolean.
    model_config = pydantic.ConfigDict(extra="allow", strict=True)
    model: str
    messages: list[_Message] = pydantic.Field(min_length=1)
    max_tokens: Annotated[int, pydantic.Field(ge=1, le=INT_MAX), WHOLE] | None = None
    max_completion_tokens: Annotated[int, pydantic.Field(ge=1, le=INT_MAX), WHOLE] | None = None
    temperature: float | None = pydantic.Field(default=None, ge=0, le=2)
    stop: str | list[str] | None = None
    stream: bool = False
    n: Annotated[int, pydantic.Field(ge=1, le=1), WHOLE] = 1


class _EmbeddingRequest(pydantic.BaseModel):
    # Strict, as the native routes are: "3" is not an integer, nor "yes" a boolean.
    model_config = pydantic.ConfigDict(extra="allow", strict=True)
    model: str
    input: str | list[str] = pydantic.Field(
        min_length=1,
        json_schema_extra={  # the bound of each member, which pydantic leaves out of a union
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        },
    )
    encoding_format: str = pydantic.Field(default="float", pattern="^(float|base64)$")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _words(text: str) -> int:
    return len(text.split())


def _finish(tokens: int, max_tokens: int | None) -> str:
    """``length`` when the answer used all the tokens asked for, else ``stop``."""
    return "length" if max_tokens is not None and tokens >= max_tokens else "stop"


class OpenAIRoutes:
    """/v1/models, /v1/chat/completions and /v1/embeddings."""

    def __init__(
        self,
        broker: Broker,
        limits: Limits,
        auth: Auth,
        *,
        check_serving: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.broker = broker
        self.limits = limits
        self.auth = auth
        self.created = int(time.time())
        self.check_serving = check_serving
        """Raises when an endpoint takes no jobs now (the server's refusal, e.g. 503)."""

    async def _guard(self, request: Request, handler: Any) -> Any:
        try:
            return await handler(request)
        except OpenAIError as e:
            return _json(e.body, e.status)
        except ModelportError as e:
            first = e.errors[0]["field"] if e.errors else None
            return _json(OpenAIError(e.status, e.message, param=first).body, e.status, e.headers)

    async def _admit(self, request: Request, spec: EndpointSpec) -> str | None:
        """Check the caller may use the endpoint and count the request against its key's
        limits; the owner of the jobs it submits."""
        principal = principal_of(request)
        self.auth.check_endpoint(principal, spec.name)
        await self.auth.admit(principal, spec.name, client_host(request))
        return principal.owner

    async def models(self, request: Request) -> Response:
        await self.broker.sync_specs()
        principal = principal_of(request)
        data = [
            {"id": s.name, "object": "model", "created": self.created, "owned_by": "modelport"}
            for s in self.broker.specs.values()
            if s.kind in ("chat", "embedding") and principal.may_use(s.name)
        ]
        return _json({"object": "list", "data": data})

    async def _spec(self, name: str, kind: str) -> EndpointSpec:
        if name not in self.broker.specs:
            await self.broker.sync_specs()
        spec = self.broker.specs.get(name)
        if spec is None or spec.kind != kind:
            available = sorted(s.name for s in self.broker.specs.values() if s.kind == kind)
            raise OpenAIError(
                404,
                f"no {kind} model named {name!r}; available: {', '.join(available) or 'none'}",
                param="model",
                code="model_not_found",
            )
        return spec

    async def _parse(self, request: Request, model: type[pydantic.BaseModel]) -> Any:
        body = await read_body(request, self.limits.max_body_size)
        try:
            return model.model_validate_json(body)
        except pydantic.ValidationError as e:
            raise _refused(e) from None

    def _validated(self, spec: EndpointSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        try:
            parsed = spec.request_model.model_validate({"input": inputs})
        except pydantic.ValidationError as e:
            raise _refused(e, strip="input") from None
        dumped: dict[str, Any] = parsed.input.model_dump()  # type: ignore[attr-defined]
        check_shape(dumped, self.limits)
        return dumped

    async def chat(self, request: Request) -> Any:
        return await self._guard(request, self._chat)

    async def _chat(self, request: Request) -> Any:
        body: _ChatRequest = await self._parse(request, _ChatRequest)
        spec = await self._spec(body.model, "chat")
        if self.check_serving is not None:
            await self.check_serving(spec.name)
        inputs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.text()} for m in body.messages]
        }
        optional = {
            "max_tokens": body.max_completion_tokens or body.max_tokens,
            "temperature": body.temperature,
            "stop": [body.stop] if isinstance(body.stop, str) else body.stop,
        }
        inputs.update({k: v for k, v in optional.items() if v is not None and k in spec.inputs})
        validated = self._validated(spec, inputs)
        owner = await self._admit(request, spec)
        job = await self.broker.submit(spec.name, validated, owner=owner)
        completion_id = f"chatcmpl-{job.id}"
        max_tokens = inputs.get("max_tokens")
        if body.stream:
            return EventStream(
                self._chunks(job, completion_id, body.model, max_tokens),
                SSE,
                on_hangup=lambda: self._cancel(job.id),
            )
        job = await self.broker.wait(job.id, self.limits.max_wait, job=job)
        text = self._final_text(job)
        chunks = sum(e.type == "output" for e in await self.broker.store.events(job.id))
        completion = chunks or _words(text)
        prompt = sum(_words(m["content"]) for m in inputs["messages"])
        return _json(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(job.created_at),
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": _finish(completion, max_tokens),
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    async def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(ModelportError):
            await self.broker.cancel(job_id)

    def _final_text(self, job: JobRecord) -> str:
        if job.status is JobStatus.SUCCEEDED:
            return _text(job.output)
        if not job.status.final:
            raise OpenAIError(
                504, f"job {job.id} did not finish in time; it keeps running", kind="timeout"
            )
        raise OpenAIError(502, f"the model did not answer: {job.error}", kind="server_error")

    async def _chunks(
        self, job: JobRecord, completion_id: str, model: str, max_tokens: int | None
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(job.created_at),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(body) + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        streamed = 0
        async for item in job_events(self.broker, job.id, None):
            if item is None:
                yield b": keep-alive\n\n"
                continue
            _, kind, data = item
            if kind == "output":
                streamed += 1
                yield chunk(
                    {"content": data if isinstance(data, str) else orjson.dumps(data).decode()}
                )
            elif kind == JobStatus.SUCCEEDED:
                if not streamed:
                    final = data["output"]
                    yield chunk(
                        {
                            "content": final
                            if isinstance(final, str)
                            else orjson.dumps(final).decode()
                        }
                    )
                    yield chunk({}, _finish(_words(_text(final)), max_tokens))
                else:
                    yield chunk({}, _finish(streamed, max_tokens))
            elif kind in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED):
                error = OpenAIError(
                    502, f"the model did not answer: {data.get('error')}", kind="server_error"
                )
                yield b"data: " + orjson.dumps(error.body) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Any:
        return await self._guard(request, self._embeddings)

    async def _embeddings(self, request: Request) -> Response:
        body: _EmbeddingRequest = await self._parse(request, _EmbeddingRequest)
        spec = await self._spec(body.model, "embedding")
        if self.check_serving is not None:
            await self.check_serving(spec.name)
        field = _text_input(spec)
        texts = [body.input] if isinstance(body.input, str) else body.input
        validated = [self._validated(spec, {field: t}) for t in texts]
        owner = await self._admit(request, spec)
        jobs = [await self.broker.submit(spec.name, v, owner=owner) for v in validated]
        done = await asyncio.gather(
            *(self.broker.wait(j.id, self.limits.max_wait, job=j) for j in jobs)
        )
        data = []
        for index, job in enumerate(done):
            vector = _vector(job, self._final_text)
            embedding: Any = vector
            if body.encoding_format == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_words(t) for t in texts)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _refused(e: pydantic.ValidationError, *, strip: str | None = None) -> OpenAIError:
    """A 400 in OpenAI's shape, naming the first wrong field as ``param``."""
    first = field_errors(e.errors(include_url=False, include_input=False), strip=strip)[0]
    param = None if first["field"] == "body" else first["field"]
    return OpenAIError(
        400, f"{param}: {first['message']}" if param else first["message"], param=param
    )


def _text_input(spec: EndpointSpec) -> str:
    for name, field in spec.inputs.items():
        if field.type == "string":
            return name
    raise NotFound(f"embedding endpoint {spec.name!r} has no string input")


def _vector(job: JobRecord, check: Any) -> list[float]:
    if job.status is not JobStatus.SUCCEEDED:
        check(job)  # raises the right OpenAI error
    output = job.output
    if isinstance(output, dict):
        output = output.get("embedding")
    if not isinstance(output, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in output
    ):
        raise OpenAIError(
            502, "the embedding model did not return a list of numbers", kind="server_error"
        )
    return [float(v) for v in output]
