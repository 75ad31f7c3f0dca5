"""The shapes of the client routes' answers, for the OpenAPI document.

The handlers build plain dicts on the hot path; these models only describe them (the
worker routes' messages are described by their own dataclasses in :mod:`modelport.wire`).
The tests check real answers against the schemas made from these, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(_Shape):
    """One invalid field: its dotted path and what is wrong with it."""

    field: str = Field(examples=["sepal_length"])
    message: str = Field(examples=["Input should be less than or equal to 10"])


class Problem(_Shape):
    """An error, as an RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(examples=["urn:modelport:problem:validation"])
    title: str = Field(examples=["Invalid input"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["sepal_length: Input should be less than or equal to 10"])
    errors: list[FieldError] | None = Field(
        None, description="For invalid input: every field that failed, with the rule."
    )


class Progress(BaseModel):
    """How far a running job is, as its model last reported."""

    model_config = ConfigDict(extra="allow")
    fraction: float | None = Field(None, ge=0, le=1)
    message: str | None = None
    data: dict[str, JsonValue] | None = Field(None, description="The endpoint's progress fields.")


class Job(_Shape):
    """One request to one endpoint, with its input, its outcome and its timings."""

    id: str = Field(examples=["0c5a8c5e2b1d4f6e9a7b3c1d2e4f6a8b"])
    endpoint: str = Field(examples=["iris"])
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
    input: dict[str, JsonValue] = Field(description="The validated input, defaults filled in.")
    output: JsonValue = Field(description="The model's answer once the job succeeded.")
    error: str | None = Field(description="Why the job failed, expired or was cancelled.")
    progress: Progress | None = None
    attempts: int = Field(description="Times a worker has started the job.")
    worker: str | None = Field(description="The worker that ran (or runs) the job.")
    revision: int = Field(
        description="The revision of the endpoint's spec the input was validated against;"
        " only a worker serving that revision runs the job."
    )
    model_version: str | None = Field(
        description="The version of the model (of that revision) that runs it."
    )
    created_at: float = Field(description="Unix time the job was accepted.")
    started_at: float | None
    completed_at: float | None
    queue_time: float | None = Field(description="Seconds from accepted to started.")
    compute_time: float | None = Field(description="Seconds from started to finished.")
    queue_position: int | None = Field(
        None, description="Jobs ahead of this one (0: next); only while it is not finished."
    )
    eta: float | None = Field(
        None, description="Seconds until it is likely finished, from recent compute times."
    )


class Worker(_Shape):
    """A worker serving an endpoint, as the server last heard from it."""

    id: str
    name: str
    state: Literal["online", "offline"]
    last_seen: float
    max_batch_size: int
    metadata: dict[str, JsonValue]
    revisions: dict[str, int] = Field(
        description="The revision of each endpoint's spec the worker serves."
    )
    jobs_done: int
    mean_compute_time: float | None


class EndpointSummary(_Shape):
    """One endpoint in the list."""

    name: str = Field(examples=["iris"])
    title: str
    description: str
    version: str
    revision: int = Field(
        description="1 when the endpoint is defined, one more each time PUT /endpoints/{name}"
        " replaces its spec."
    )
    kind: Literal["predict", "chat", "embedding"]
    state: Literal["ready", "loading", "no-workers", "setup-failed", "disabled", "deleting"] = (
        Field(
            description="Whether it runs jobs now: a worker is online (ready), a local model's"
            " setup() is running (loading), no worker serves it yet (no-workers: jobs wait),"
            " its only workers failed setup() (setup-failed: submits answer 503), an admin"
            " disabled it (disabled: submits answer 503, queued jobs wait) or is deleting it"
            " (deleting: submits answer 503, queued and running jobs finish first)."
        )
    )
    reason: str | None = Field(description="Why it is not ready; null when it is.")
    workers_online: int
    queue_depth: int = Field(description="Jobs waiting for a worker.")
    running: int


class Limits(_Shape):
    max_batch_size: int
    max_batch_wait: float
    lease_duration: float
    max_attempts: int
    max_queue_length: int
    max_body_size: int


class EndpointDetail(EndpointSummary):
    """One endpoint: its JSON Schemas, limits, workers and full spec."""

    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    progress_schema: dict[str, Any]
    limits: Limits
    workers: list[Worker]
    spec: dict[str, Any] = Field(description="The spec a remote worker must match.")
    metadata: dict[str, JsonValue] = Field(
        description="What the model declares: training_args, metrics, labels, ..."
    )
    earlier_revisions: list[int] | None = Field(
        None,
        description="Earlier revisions still kept: their workers run the jobs validated"
        " against them.",
    )


class WorkerModel(_Shape):
    """One worker's model, as the worker described it when it joined."""

    id: str
    name: str
    state: Literal["online", "offline"]
    revision: int = Field(description="The revision of the endpoint's spec it serves")
    model: dict[str, JsonValue] = Field(
        description="Its class, version and what its Model.info() returned"
    )
    device: JsonValue = None


class EndpointMetadata(_Shape):
    """What an endpoint's model declares, and what each worker's model says of itself."""

    name: str
    version: str
    revision: int
    description: str
    metadata: dict[str, JsonValue] = Field(
        description="The spec's [metadata]: training_args, metrics, labels, ..."
    )
    workers: list[WorkerModel]
    workers_differ: bool = Field(
        description="Whether the workers' models describe themselves differently"
    )


class LogLine(_Shape):
    """One line a model printed (stdout, stderr) or logged while it worked on a job."""

    id: int = Field(description="1, 2, ... over the endpoint's log")
    job_id: str
    level: Literal["debug", "info", "warning", "error", "critical"]
    message: str
    time: float = Field(description="Unix time it was written")
    stream: Literal["stdout", "stderr", "logging"]
    worker: str = Field(description="The worker whose model wrote it")


class LogsDeleted(_Shape):
    endpoint: str
    deleted: int = Field(description="How many lines were deleted")


class EndpointDeletion(_Shape):
    """Where a deletion is: ``deleting`` until its queued and running jobs are done."""

    name: str
    state: Literal["deleting", "deleted"]
    queued: int = Field(description="Jobs still queued (they run first, unless drain=false).")
    running: int


class Live(_Shape):
    status: Literal["ok"]


class ReadyEndpoint(_Shape):
    workers_online: int


class Ready(_Shape):
    """Ready: the store answers and every local model finished ``setup()``."""

    status: Literal["ready"]
    endpoints: dict[str, ReadyEndpoint]


class IndexEndpoint(_Shape):
    name: str
    title: str
    description: str
    kind: Literal["predict", "chat", "embedding"]
    state: Literal["ready", "loading", "no-workers", "setup-failed"] = Field(
        description="As `GET /endpoints` says."
    )
    reason: str | None
    workers_online: int
    queue_depth: int
    running: int
    url: str = Field(description="Its description: schemas, limits, workers.")
    submit: str = Field(description="Where jobs are submitted (POST).")
    example: dict[str, JsonValue] | None = Field(description="A body to submit there.")
    playground: str = Field(description="Its playground: a web form to run it.")
    chat: str | None = Field(None, description="Its chat page (chat endpoints only).")


class Index(_Shape):
    """What this server serves, and where to read more."""

    name: Literal["modelport"]
    version: str
    ready: bool
    status: str = Field(description="`ready`, or why not (as `/health/ready` says).")
    endpoints: list[IndexEndpoint]
    links: dict[str, str] = Field(
        description="docs, redoc, openapi, health_live, health_ready, metrics, and openai "
        "when a chat or embedding endpoint is served."
    )


class StreamEvent(_Shape):
    """One line of ``application/jsonl`` (SSE carries the same as ``id``, ``event``, ``data``)."""

    id: int | None = Field(
        description="A stored event's id (1, 2, ... per job): resume after it with "
        "Last-Event-ID or ?after=. The state events (queued, started and the final one) "
        "carry none."
    )
    event: Literal[
        "queued",
        "started",
        "progress",
        "output",
        "log",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    ]
    data: JsonValue = Field(description="A chunk, a progress report, or the final job.")


class ModelCard(_Shape):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Shape):
    object: Literal["list"]
    data: list[ModelCard]


class ChatChoiceMessage(_Shape):
    role: Literal["assistant"]
    content: str


class ChatChoice(_Shape):
    index: int
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"]


class ChatUsage(_Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Shape):
    """The answer; with ``"stream": true`` it comes as ``chat.completion.chunk`` SSE events
    ending with ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class Embedding(_Shape):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian f32.")


class EmbeddingUsage(_Shape):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Shape):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class OpenAIErrorBody(_Shape):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(_Shape):
    """An error in OpenAI's shape."""

    error: OpenAIErrorBody
