"""``/ui/{endpoint}/chat``: the chat page of a ``kind = "chat"`` endpoint.

The page is this HTML and the module ``static/chat.js``: it streams each answer with the
JavaScript client (``Accept: text/event-stream`` on the submit), shows the words as they
come, the time to first token and the tokens per second, stops a generation by cancelling
its job, and keeps the conversation on the server (``/conversations``), so a reload shows it
again. The endpoint's simple inputs besides ``messages`` (numbers, choices, switches such as
``max_tokens``) are offered as settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import NotFound
from modelport.server.pages import STATIC_PREFIX, e, render, root_of
from modelport.server.pages.forms import field_html, kind_of, resolve
from modelport.server.pages.views import login

if TYPE_CHECKING:
    from modelport.server.app import Server

_SETTINGS = ("integer", "number", "boolean", "enum")


def settings_html(schema: dict[str, Any]) -> str:
    """The chat endpoint's inputs a person may set beside the conversation."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        if name == "messages":
            continue
        resolved, nullable = resolve(prop, schema)
        if kind_of(resolved) in _SETTINGS:
            fields.append(field_html(name, resolved, name in required, nullable))
    return "\n".join(fields)


class ChatPage:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = await self.server._find_spec(name)
        if spec.kind != "chat":
            raise NotFound(
                f"{name!r} is a {spec.kind} endpoint, not a chat endpoint; "
                f"its playground is /ui/{name}"
            )
        root = root_of(request)
        settings = settings_html(spec.input_schema())
        if settings:
            settings = f"""<details class="card settings"><summary>Settings</summary>
<form id="settings" novalidate>
{settings}
</form></details>"""
        main = f"""<link rel="stylesheet" href="{e(root + STATIC_PREFIX)}/chat.css">
<h1>{e(name)} <small class="kind">chat · version {e(spec.version)}</small></h1>
<p class="meta">{e(spec.description or spec.title or "")} ·
<a href="{e(root)}/ui/{e(name)}">Playground</a></p>
{login("This server needs an API key with access to this endpoint.")}
<div class="chat-layout">
<nav class="card conversations" aria-labelledby="conversations-title">
<h2 id="conversations-title">Conversations</h2>
<button type="button" id="new-chat">New chat</button>
<ul id="conversation-list"></ul>
</nav>
<section class="card chat" aria-labelledby="chat-title">
<h2 id="chat-title">Conversation</h2>
<ol id="messages" class="messages" role="log" aria-label="Messages"></ol>
<p id="status" class="meta" role="status" aria-live="polite">Ready.</p>
<dl class="stats">
<dt>Time to first token</dt><dd><output id="ttft">-</output></dd>
<dt>Tokens per second</dt><dd><output id="tps">-</output></dd>
<dt>Tokens</dt><dd><output id="tokens">-</output></dd>
</dl>
{settings}
<form id="composer">
<label for="prompt">Message</label>
<textarea id="prompt" name="prompt" rows="3" required
 aria-describedby="prompt-hint chat-error"></textarea>
<span class="hint" id="prompt-hint">Enter sends; Shift+Enter starts a new line.</span>
<p class="error" id="chat-error" role="alert"></p>
<div class="actions">
<button type="submit" class="primary" id="send">Send</button>
<button type="button" id="stop" disabled>Stop</button>
</div>
</form>
</section>
</div>"""
        return render(
            request,
            f"{name} chat",
            main,
            script="chat.js",
            data={"endpoint": name},
            auth=self.server.settings.auth,
        )
