"""Server-wide limits and settings, declared once: the server, the core and the CLI's defaults
all read them from here (an endpoint's spec may tighten some per endpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelport.stores.base import LogBounds


@dataclass
class Limits:
    """Sizes, waits, timeouts and TTLs, passed whole (as httpx passes ``Limits``)."""

    max_body_size: int = 10 * 1024 * 1024
    """Largest request body, in bytes (413 beyond it)."""
    default_wait: float = 30.0
    """How long a submit waits for the result when the client does not say (``Prefer: wait``)."""
    max_json_depth: int = 32
    """Deepest nesting of lists and objects in a job's inputs (422 beyond it)."""
    max_string_length: int = 1_000_000
    """Longest string (or object key) in a job's inputs, in characters (413 beyond it)."""
    max_list_length: int = 100_000
    """Longest list in a job's inputs (413 beyond it)."""
    max_object_keys: int = 10_000
    """Most keys of one object in a job's inputs (413 beyond it)."""
    max_wait: float = 300.0
    """The most a client may ask to wait on one request."""
    max_queue_length: int = 10_000
    """Queued jobs per endpoint before submits get 429 (an endpoint's spec may lower it)."""
    max_queue_time: float | None = None
    """Seconds a job may wait to start before it expires (an endpoint's spec may override)."""
    timeout: float | None = None
    """Seconds a job may compute before it fails (an endpoint's spec may override)."""
    result_ttl: float | None = 86_400.0
    """Seconds a finished job is kept (an endpoint's spec may override); None keeps them."""
    offline_after: float = 30.0
    """Seconds without a word from a worker before it counts as offline."""
    reap_interval: float = 0.5
    """How often expired leases are looked for, in seconds."""
    max_image_pixels: int = 50_000_000
    """Largest image input, in pixels, whatever an endpoint declares (decompression bombs)."""
    max_audio_duration: float = 3600.0
    """Longest audio input, in seconds, whatever an endpoint declares."""
    fetch_allow: tuple[str, ...] = ()
    """Hosts a media input may be fetched from by URL (``*.example.com``, ``*``); none:
    URLs are refused. Non-public addresses only for hosts listed by exact name."""
    fetch_timeout: float = 10.0
    """Seconds one URL fetch may take, redirects included."""
    log_max_entries: int = 10_000
    """Log lines of models kept per endpoint (the oldest dropped first)."""
    log_max_bytes: int = 16 * 1024 * 1024
    """Bytes of log text kept per endpoint (the oldest lines dropped first)."""
    log_max_age: float = 7 * 86_400.0
    """Seconds a model's log line is kept."""
    max_inline_media: int | None = 256 * 1024
    """A media output longer than this (as a data URL) is stored as a file of its job and
    the output carries its URL, ``/jobs/{id}/files/{name}``; None keeps every one inline."""

    @property
    def log_bounds(self) -> LogBounds:
        """What each endpoint's log keeps."""
        return LogBounds(self.log_max_entries, self.log_max_bytes, self.log_max_age)


@dataclass
class Settings(Limits):
    """Everything a server is started with: its :class:`Limits` and its credentials."""

    worker_token: str | None = None
    """A credential remote workers may present (besides worker keys)."""
    auth: str = "none"
    """``keys``: every client, OpenAI and admin route needs an API key; ``none``: only the
    worker routes need a credential (keys presented are still honoured)."""
    metrics_auth: bool = False
    """Whether ``/metrics`` needs an admin key (with ``auth="keys"``)."""
    session_ttl: float = 3600.0
    """The longest a browser session made with ``POST /sessions`` lasts, in seconds."""
    cors_origins: tuple[str, ...] = ()
    anonymous_rate: float | None = None
    """Submits per second allowed to each client address without a key (a token bucket in
    the store, of ``ceil(rate)`` at once, keyed by the address uvicorn reports, which is the
    ``X-Forwarded-For`` one from a trusted proxy); None: no limit."""
    """Browser origins allowed to call the API (CORS); none by default."""
    precomputed: dict[str, str] = field(default_factory=dict)
    """Per endpoint name, a predictions table to answer from (overrides the spec's)."""
    webhook_allow: tuple[str, ...] = ()
    """Where webhooks may go: ``host`` or ``host:port`` entries, ``*`` for any public host
    (loopback and private addresses only when listed); none: no webhooks."""
    webhook_secret: str | None = None
    """The secret webhooks are signed with (``whsec_<base64>`` or any text)."""
    allow_runtime_adapters: bool = False
    """Whether ``PUT /endpoints/{name}`` may add ``kind = "http"`` and ``"subprocess"``
    endpoints, which the server then runs (a program named in a request: off by default)."""
