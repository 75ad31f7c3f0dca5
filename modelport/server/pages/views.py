"""The handlers of the pages: the playground of an endpoint and the admin dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from modelport.server.examples import input_example
from modelport.server.pages import e, render, root_of
from modelport.server.pages.forms import form_html

if TYPE_CHECKING:
    from modelport.server.app import Server

_LOGIN = """<section id="login" class="card" hidden aria-labelledby="login-title">
<h2 id="login-title">Sign in</h2>
<p class="hint" id="login-why">{why}</p>
<form id="login-form">
<div class="field"><label for="login-key">API key</label>
<input type="password" id="login-key" name="key" autocomplete="off" required
 aria-describedby="login-hint login-error">
<span class="hint" id="login-hint">Traded at once for a session token for this tab;
the key itself is not kept by the page.</span>
<span class="error" id="login-error" role="alert"></span></div>
<button type="submit" class="primary">Sign in</button>
</form>
</section>"""


def login(why: str) -> str:
    """The sign-in form the page's module shows when the server asks for a credential."""
    return _LOGIN.format(why=e(why))


class Pages:
    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def auth(self) -> str:
        return self.server.settings.auth

    async def playground(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = self.server.broker.specs.get(name)
        if spec is None:
            await self.server.broker.sync_specs()
            spec = self.server.broker.specs.get(name)
        root = root_of(request)
        if spec is None:
            return self._missing(request, name)
        output = spec.output_schema()
        media = output.get("contentMediaType", "") if isinstance(output, dict) else ""
        chat = ""
        if spec.kind == "chat":
            chat = f' · <a href="{e(root)}/ui/{e(name)}/chat">Chat page</a>'
        main = f"""<h1>{e(name)}
<small class="kind">{e(spec.kind)} · version {e(spec.version)}</small></h1>
<p>{e(spec.description or spec.title or "")}</p>
<p class="meta"><span id="state" class="state">…</span> <span id="state-detail"></span> ·
<a href="{e(root)}/docs#/{e(name)}/submit_{e(name)}">API docs</a>{chat}</p>
{login("This server needs an API key with access to this endpoint.")}
<form id="playground" class="card" novalidate aria-describedby="form-error">
{form_html(spec.input_schema(), input_example(spec))}
<p class="error" id="form-error" role="alert"></p>
<div class="actions">
<button type="submit" class="primary" id="run">Run</button>
<button type="button" id="cancel" disabled>Cancel</button>
</div>
</form>
<section id="result" aria-labelledby="result-title">
<h2 id="result-title">Result</h2>
<p id="status" role="status" aria-live="polite">Not run yet.</p>
<progress id="progress" max="1" value="0" hidden aria-label="Progress"></progress>
<p id="message" aria-live="polite"></p>
<div id="preview" class="preview"></div>
<div id="output" class="output"></div>
</section>
<section id="code" aria-labelledby="code-title">
<h2 id="code-title">The same request</h2>
<div class="tabs" role="tablist" aria-label="Language">
<button type="button" role="tab" id="tab-curl" aria-controls="code-curl"
 aria-selected="true">curl</button>
<button type="button" role="tab" id="tab-python" aria-controls="code-python"
 aria-selected="false" tabindex="-1">Python</button>
<button type="button" role="tab" id="tab-js" aria-controls="code-js"
 aria-selected="false" tabindex="-1">JavaScript</button>
</div>
<pre role="tabpanel" id="code-curl" aria-labelledby="tab-curl"><code></code></pre>
<pre role="tabpanel" id="code-python" aria-labelledby="tab-python" hidden><code></code></pre>
<pre role="tabpanel" id="code-js" aria-labelledby="tab-js" hidden><code></code></pre>
<button type="button" id="copy">Copy</button> <span id="copied" aria-live="polite"></span>
</section>"""
        return render(
            request,
            f"{name} playground",
            main,
            script="playground.js",
            data={"endpoint": name, "output-media": str(media)},
            auth=self.auth,
        )

    def _missing(self, request: Request, name: str) -> Response:
        root = root_of(request)
        links = "".join(
            f'<li><a href="{e(root)}/ui/{e(n)}">{e(n)}</a></li>'
            for n in sorted(self.server.broker.specs)
        )
        main = f"""<h1>No endpoint named {e(name)}</h1>
<p>The endpoints served here:</p><ul>{links or "<li>none yet</li>"}</ul>"""
        return render(request, "Not found", main, auth=self.auth, status=404)

    async def admin(self, request: Request) -> Response:
        main = f"""<h1>Admin</h1>
{login("The dashboard needs an admin key.")}
<div id="dashboard" hidden>
<p class="meta"><span id="live" role="status" aria-live="polite">Connecting…</span>
<button type="button" id="logout">Sign out</button></p>
<section aria-labelledby="endpoints-title"><h2 id="endpoints-title" tabindex="-1">Endpoints</h2>
<p class="hint">Disable refuses new jobs (503 with the reason) while the queued ones wait;
enable takes them again; drain refuses new jobs and deletes the endpoint once its queued and
running jobs are done.</p>
<p id="endpoints-status" role="status" aria-live="polite"></p>
<div id="charts" class="charts"></div>
<div id="endpoint-detail" class="card" hidden aria-live="polite"></div>
<div id="logs" class="card" hidden>
<h3 id="logs-title">Logs</h3>
<div class="filters">
<div class="field"><label for="logs-level">Level</label><select id="logs-level">
<option value="debug">debug and above</option><option value="info">info and above</option>
<option value="warning">warning and above</option><option value="error">error and above</option>
<option value="critical">critical</option></select></div>
<div class="field"><label for="logs-job">Job id (empty: all)</label>
<input type="text" id="logs-job"></div>
<div class="field"><label for="logs-limit">Newest lines</label>
<input type="number" id="logs-limit" min="1" max="10000" value="200"></div>
<button type="button" id="logs-close">Close logs</button>
</div>
<p id="logs-status" class="meta" role="status" aria-live="polite"></p>
<table id="log-lines"><thead><tr><th scope="col">Time (UTC)</th><th scope="col">Level</th>
<th scope="col">Job</th><th scope="col">Stream</th><th scope="col">Message</th></tr></thead>
<tbody></tbody></table>
</div></section>
<section aria-labelledby="workers-title"><h2 id="workers-title">Workers</h2>
<table id="workers"><thead><tr><th scope="col">Name</th><th scope="col">State</th>
<th scope="col">Host</th><th scope="col">Device</th><th scope="col">Endpoints</th>
<th scope="col">Model version</th><th scope="col">Jobs done</th><th scope="col">Last seen</th>
</tr></thead><tbody></tbody></table></section>
<section aria-labelledby="jobs-title"><h2 id="jobs-title">Jobs</h2>
<div class="filters">
<div class="field"><label for="filter-endpoint">Endpoint</label>
<select id="filter-endpoint"><option value="">all</option></select></div>
<div class="field"><label for="filter-status">Status</label>
<select id="filter-status"><option value="">all</option><option>queued</option>
<option>running</option><option>succeeded</option><option>failed</option>
<option>cancelled</option><option>expired</option></select></div>
<div class="field"><label for="job-id">Open a job by id</label>
<input type="text" id="job-id"></div><button type="button" id="open-job">Open</button>
</div>
<table id="jobs"><thead><tr><th scope="col">Job</th><th scope="col">Endpoint</th>
<th scope="col">Revision</th><th scope="col">Model version</th><th scope="col">Status</th>
<th scope="col">Duration</th><th scope="col">Error</th>
<th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody></tbody></table>
<div id="job" class="card" hidden aria-live="polite"></div></section>
<section aria-labelledby="keys-title"><h2 id="keys-title">Keys</h2>
<form id="new-key" class="filters">
<div class="field"><label for="key-scope">Scope</label><select id="key-scope" name="scope">
<option>client</option><option>worker</option><option>admin</option></select></div>
<div class="field"><label for="key-name">Name</label>
<input type="text" id="key-name" name="name"></div>
<div class="field"><label for="key-endpoints">Endpoints (comma-separated, empty: all)</label>
<input type="text" id="key-endpoints" name="endpoints"></div>
<button type="submit">Create key</button>
</form>
<p id="key-created" aria-live="polite"></p>
<p class="error" id="key-error" role="alert"></p>
<table id="keys"><thead><tr><th scope="col">Id</th><th scope="col">Name</th>
<th scope="col">Scope</th><th scope="col">Endpoints</th><th scope="col">Last used</th>
<th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody></tbody></table>
</section>
</div>"""
        return render(request, "Admin", main, script="admin.js", auth=self.auth, wide=True)
