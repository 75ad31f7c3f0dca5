// The JavaScript client against a real modelport server (started by tests/test_js_client.py):
// MODELPORT_URL serves examples/echo, tests/models/stream.py, basic.py, media.py and chatty.py
// under --auth keys; MODELPORT_ADMIN_KEY is an admin key of it.
import assert from "node:assert/strict";
import http from "node:http";
import { before, describe, test } from "node:test";
import zlib from "node:zlib";

import {
  BadRequest,
  Client,
  Conflict,
  Forbidden,
  InvalidInput,
  InvalidRequest,
  JobFailed,
  ModelportError,
  NotFound,
  Overloaded,
  RateLimited,
  TimedOut,
  Unauthorized,
  Unavailable,
  Unreachable,
} from "modelport";

const URL_ = process.env.MODELPORT_URL;
const ADMIN = process.env.MODELPORT_ADMIN_KEY;
if (!URL_ || !ADMIN) throw new Error("set MODELPORT_URL and MODELPORT_ADMIN_KEY (tests/test_js_client.py does)");

async function makeKey(body) {
  const r = await fetch(`${URL_}/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return (await r.json()).key;
}

let client;
before(async () => {
  client = new Client(URL_, { apiKey: await makeKey({ scope: "client", name: "js" }) });
});

async function outputs(iterable, limit = Infinity) {
  const seen = [];
  for await (const event of iterable) {
    seen.push(event);
    if (seen.filter((e) => e.event === "output").length >= limit) break;
  }
  return seen;
}

const text = (events) => events.filter((e) => e.event === "output").map((e) => e.data).join("");

// A PNG of random pixels (it does not compress), made here so the test needs no files.
function png(width, height) {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = 2;
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let i = 0; i < rows.length; i++) rows[i] = i % (width * 3 + 1) === 0 ? 0 : (Math.random() * 256) | 0;
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
      chunk("IHDR", header),
      chunk("IDAT", zlib.deflateSync(rows, { level: 1 })),
      chunk("IEND", Buffer.alloc(0)),
    ]),
  );
}

const pngSize = (bytes) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return [view.getUint32(16), view.getUint32(20)];
};

describe("predict and submit", () => {
  test("predict resolves to the output", async () => {
    assert.deepEqual(await client.predict("echo", { text: "héllo <b>" }), { text: "héllo <b>" });
  });

  test("submit returns a job handle to wait for, refresh and read", async () => {
    const job = await client.submit("add", { a: 2, b: 3 });
    assert.match(job.id, /\S/);
    assert.ok(["queued", "running", "succeeded"].includes(job.status));
    await job.wait({ timeout: 20 });
    assert.equal(job.status, "succeeded");
    assert.deepEqual(job.output, { sum: 5 });
    assert.deepEqual(await job.result(), { sum: 5 });
    const again = await client.job(job.id);
    assert.equal(again.status, "succeeded");
    assert.deepEqual((await again.refresh()).output, { sum: 5 });
  });

  test("progress callbacks get each progress of the job", async () => {
    const seen = [];
    const out = await client.predict("paint", { width: 8, height: 4, steps: 3 }, { onProgress: (p) => seen.push(p) });
    assert.match(out, /^data:image\/png;base64,/);
    // The worker sends progress at most every 0.2 s, the latest then: one at least comes.
    assert.ok(seen.length >= 1);
    for (const p of seen) {
      assert.match(p.message, /^step [123]$/);
      assert.ok(p.fraction > 0 && p.fraction <= 1);
    }
  });

  test("a wait that runs out throws TimedOut", async () => {
    const job = await client.submit("ticker", { n: 200, every: 0.05 });
    await assert.rejects(job.wait({ timeout: 0.3 }), TimedOut);
    await job.cancel();
  });
});

describe("stream and events", () => {
  test("stream yields chunks as they are made, then the final event", async () => {
    const stream = client.stream("ticker", { n: 4, every: 0.01 });
    const events = await outputs(stream);
    assert.equal(text(events), "w0 w1 w2 w3 ");
    assert.equal(events.at(-1).event, "succeeded");
    assert.equal(stream.final.status, "succeeded");
    const job = await stream.job;
    assert.equal(job.id, stream.jobId);
    const ids = events.filter((e) => e.event === "output").map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    assert.equal(await client.stream("ticker", { n: 3, every: 0 }).text(), "w0 w1 w2 ");
  });

  test("text() of a model that returns its text whole is that text", async () => {
    const messages = [{ role: "user", content: "abc def" }];
    assert.equal(await client.stream("oneshot", { messages }).text(), "fed cba");
  });

  test("events() resume after a given event id with nothing missed or repeated", async () => {
    const job = await client.submit("ticker", { n: 6, every: 0.02 });
    const first = await outputs(job.events(), 3);
    const last = first.filter((e) => e.id !== null).at(-1).id;
    const rest = await outputs(job.events({ after: last }));
    assert.equal(text(first) + text(rest), "w0 w1 w2 w3 w4 w5 ");
    assert.ok(rest.every((e) => e.id === null || e.id > last));
    assert.equal(rest.at(-1).event, "succeeded");
    assert.equal(job.status, "succeeded");
  });

  test("a dropped event stream is resumed with Last-Event-ID", async () => {
    // A proxy that cuts the first events connection right after its first stored event.
    const upstream = new URL(URL_);
    const asked = [];
    const proxy = http.createServer((req, res) => {
      const cut = req.url.endsWith("/events") && !asked.some((a) => a.url === req.url);
      asked.push({ url: req.url, lastEventId: req.headers["last-event-id"] ?? null });
      const forward = http.request(
        { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode, up.headers);
          let done = false;
          up.on("data", (data) => {
            if (done) return;
            if (cut && /^id: /m.test(data.toString())) {
              done = true;
              up.destroy();
              res.write(data, () => res.socket.destroy());
            } else res.write(data);
          });
          up.on("end", () => res.end());
        },
      );
      req.pipe(forward);
    });
    await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    try {
      const via = new Client(`http://127.0.0.1:${proxy.address().port}`, { apiKey: client.apiKey });
      const job = await via.submit("ticker", { n: 5, every: 0.03 });
      const events = await outputs(job.events());
      assert.equal(text(events), "w0 w1 w2 w3 w4 ");
      assert.equal(events.at(-1).event, "succeeded");
      const resumed = asked.filter((a) => a.url.endsWith("/events"));
      assert.equal(resumed.length, 2, JSON.stringify(asked));
      assert.equal(resumed[0].lastEventId, null);
      assert.match(resumed[1].lastEventId, /^[1-9]\d*$/);
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});

describe("cancel", () => {
  test("cancel stops a running job; result() then throws JobFailed", async () => {
    const job = await client.submit("ticker", { n: 1000, every: 0.02 });
    await outputs(job.events(), 1);
    await job.cancel();
    assert.equal(job.status, "cancelled");
    await job.wait({ timeout: 10 });
    const failed = await job.result().catch((e) => e);
    assert.ok(failed instanceof JobFailed);
    assert.equal(failed.job.status, "cancelled");
    const finished = await client.submit("add", { a: 1 });
    await finished.wait({ timeout: 20 });
    await assert.rejects(finished.cancel(), Conflict);
  });

  test("Stream.cancel() ends the stream with its cancelled event", async () => {
    const stream = client.stream("ticker", { n: 1000, every: 0.02 });
    const events = [];
    for await (const event of stream) {
      events.push(event);
      if (event.event === "output" && event.data === "w1 ") await stream.cancel();
    }
    assert.equal(events.at(-1).event, "cancelled");
    assert.ok(text(events).length < 1000 * 3);
    assert.equal((await client.job(stream.jobId)).status, "cancelled");
  });
});

describe("errors", () => {
  test("invalid input is InvalidInput naming the field", async () => {
    const err = await client.predict("echo", {}).catch((e) => e);
    assert.ok(err instanceof InvalidInput && err instanceof InvalidRequest && err instanceof ModelportError);
    assert.equal(err.status, 422);
    assert.equal(err.name, "InvalidInput");
    assert.deepEqual(
      err.errors.map((e) => e.field),
      ["text"],
    );
    assert.equal(err.problem.type, "urn:modelport:problem:validation");
  });

  test("an unknown endpoint or job is NotFound", async () => {
    await assert.rejects(client.predict("nope", {}), NotFound);
    await assert.rejects(client.job("no-such-job"), NotFound);
  });

  test("a failed job throws JobFailed with its record", async () => {
    const err = await client.predict("fails", { x: -1 }).catch((e) => e);
    assert.ok(err instanceof JobFailed);
    assert.equal(err.job.status, "failed");
    assert.match(err.job.error, /must not be negative/);
  });

  test("a key over its cap of queued jobs is RateLimited, with retryAfter", async () => {
    const capped = new Client(URL_, { apiKey: await makeKey({ scope: "client", max_queued: 1 }) });
    const blocker = await capped.submit("slow", { n: 1, seconds: 3 });
    for await (const event of blocker.events()) if (event.event === "started") break;
    const queued = await capped.submit("slow", { n: 2, seconds: 3 });
    try {
      const err = await capped.submit("slow", { n: 3 }).catch((e) => e);
      assert.ok(err instanceof RateLimited && err instanceof Overloaded, String(err));
      assert.equal(err.status, 429);
      assert.ok(Number.isInteger(err.retryAfter) && err.retryAfter >= 1);
    } finally {
      await queued.cancel().catch(() => {});
      await blocker.cancel().catch(() => {});
    }
  });

  test("no server is Unreachable", async () => {
    const server = http.createServer();
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = server.address().port;
    await new Promise((resolve) => server.close(resolve));
    await assert.rejects(new Client(`http://127.0.0.1:${port}`).endpoints(), Unreachable);
  });
});

describe("media", () => {
  test("a Uint8Array and a Blob upload as multipart files with the other inputs", async () => {
    const image = png(40, 30);
    assert.deepEqual(await client.predict("inspect", { image, note: "n", k: 3 }), {
      size: [32, 16],
      mode: "RGB",
      note: "n",
      k: 3,
      corner: (await client.predict("inspect", { image: new Blob([image], { type: "image/png" }) })).corner,
    });
    const bad = await client.predict("inspect", { image: new Uint8Array([1, 2, 3]) }).catch((e) => e);
    assert.ok(bad instanceof InvalidInput);
    assert.equal(bad.errors[0].field, "image");
  });

  test("a small media output is a data URL, read as a Blob", async () => {
    const job = await client.submit("paint", { width: 6, height: 5, steps: 1 });
    await job.wait({ timeout: 20 });
    const blob = await job.outputBlob();
    assert.equal(blob.type, "image/png");
    assert.deepEqual(pngSize(new Uint8Array(await blob.arrayBuffer())), [6, 5]);
  });

  test("a large media output is fetched from /jobs/{id}/files/{name} as a Blob", async () => {
    const job = await client.submit("mirror", { image: new Blob([png(320, 320)]) });
    await job.wait({ timeout: 30 });
    assert.equal(job.status, "succeeded", job.error);
    assert.equal(job.output, `/jobs/${job.id}/files/output`);
    const blob = await job.outputBlob();
    assert.equal(blob.type, "image/png");
    assert.ok(blob.size > 256 * 1024);
    assert.deepEqual(pngSize(new Uint8Array(await blob.arrayBuffer())), [320, 320]);
  });
});

describe("conversations", () => {
  test("a conversation is kept for the key: created, read, added to, listed, deleted", async () => {
    const made = await client.createConversation("chatter", { messages: [{ role: "user", content: "hi <b>" }] });
    assert.equal(made.title, "hi <b>");
    const answer = { role: "assistant", content: "w0 ", job_id: "j", status: "succeeded" };
    assert.equal((await client.addMessages(made.id, [answer])).messages.length, 2);
    assert.deepEqual((await client.conversation(made.id)).messages.at(-1), answer);
    const listed = await client.conversations({ endpoint: "chatter" });
    assert.equal(listed[0].id, made.id);
    assert.equal(listed[0].message_count, 2);
    await client.deleteConversation(made.id);
    await assert.rejects(client.conversation(made.id), NotFound);
    await assert.rejects(client.createConversation("echo"), InvalidInput);
  });
});

describe("auth", () => {
  let limited;
  before(async () => {
    limited = await makeKey({ scope: "client", name: "echo-only", endpoints: ["echo", "ticker"] });
  });

  test("no key or a wrong key is Unauthorized", async () => {
    await assert.rejects(new Client(URL_).predict("echo", { text: "x" }), Unauthorized);
    await assert.rejects(new Client(URL_, { apiKey: "mp_wrong" }).endpoints(), Unauthorized);
    await assert.rejects(new Client(URL_, { sessionToken: "mps_e30.bad" }).endpoints(), Unauthorized);
  });

  test("a key limited to some endpoints is Forbidden elsewhere", async () => {
    const c = new Client(URL_, { apiKey: limited });
    assert.deepEqual(await c.predict("echo", { text: "ok" }), { text: "ok" });
    await assert.rejects(c.predict("add", { a: 1 }), Forbidden);
  });

  test("a session token made from a key works for its endpoints only, jobs stay its own", async () => {
    const session = await new Client(URL_, { apiKey: limited }).createSession({ endpoints: ["ticker"], ttl: 60 });
    assert.match(session.token, /^mps_/);
    assert.deepEqual(session.endpoints, ["ticker"]);
    const browser = new Client(URL_, { sessionToken: session.token });
    assert.equal(await browser.stream("ticker", { n: 2, every: 0 }).text(), "w0 w1 ");
    await assert.rejects(browser.predict("echo", { text: "x" }), Forbidden);
    const mine = await browser.submit("ticker", { n: 1, every: 0 });
    await assert.rejects(client.job(mine.id), NotFound);
    await assert.rejects(new Client(URL_, { apiKey: limited }).createSession({ endpoints: ["add"] }), Forbidden);
  });
});

describe("endpoints at run time", () => {
  let admin;
  before(() => {
    admin = new Client(URL_, { apiKey: ADMIN });
  });
  const spec = '[endpoint]\ndescription = "Put from JS"\n\n[inputs]\nword = { type = "string", required = true }\n';

  test("put, disable with a reason (submits get 503 with it), enable, drain", async () => {
    const name = `js-runtime-${Date.now()}`;
    const made = await admin.putEndpoint(name, spec);
    assert.equal(made.name, name);
    assert.equal(made.description, "Put from JS");
    assert.equal(made.revision, 1);
    assert.equal((await admin.putEndpoint(name, { ...made.spec })).revision, 1);  // the same spec, as JSON
    await assert.rejects(client.disableEndpoint(name), Forbidden);  // a client key

    const disabled = await admin.disableEndpoint(name, { reason: "retraining <now>" });
    assert.equal(disabled.state, "disabled");
    assert.equal(disabled.reason, "retraining <now>");
    const refused = await client.submit(name, { word: "a" }).catch((e) => e);
    assert.ok(refused instanceof Unavailable, String(refused));
    assert.equal(refused.status, 503);
    assert.match(refused.message, /disabled: retraining <now>$/);
    assert.ok(Number.isInteger(refused.retryAfter) && refused.retryAfter >= 1);
    const listed = (await client.endpoints()).find((e) => e.name === name);
    assert.deepEqual([listed.state, listed.reason], ["disabled", "retraining <now>"]);

    assert.equal((await admin.enableEndpoint(name)).state, "no-workers");  // taking jobs; none runs them
    const queued = await client.submit(name, { word: "b" });  // no worker serves it: it waits
    assert.equal(queued.status, "queued");
    const draining = await admin.deleteEndpoint(name);
    assert.deepEqual(draining, { name, state: "deleting", queued: 1, running: 0 });
    await assert.rejects(client.submit(name, { word: "c" }), Unavailable);
    assert.equal((await queued.refresh()).status, "queued");  // draining: it may still run
    const gone = await admin.deleteEndpoint(name, { drain: false });
    assert.equal(gone.state, "deleted");
    assert.equal((await queued.refresh()).status, "cancelled");
    await assert.rejects(admin.endpoint(name), NotFound);
    await assert.rejects(admin.enableEndpoint(name), NotFound);
  });

  test("a job's and an endpoint's logs, filtered by level, job and limit", async () => {
    const job = await client.submit("chatty", { word: "js" });
    await job.wait({ timeout: 20 });
    assert.equal(job.output, "JS");
    const said = (lines) => lines.map((l) => [l.level, l.stream, l.message]);
    assert.deepEqual(said(await job.logs({ level: "error" })), [["error", "logging", "bad js"]]);
    const all = await job.logs();
    assert.equal(all.length, 5);
    assert.ok(all.every((l) => l.job_id === job.id && typeof l.time === "number"));
    const mine = await admin.endpointLogs("chatty", { job: job.id, level: "warning" });
    assert.deepEqual(said(mine), [
      ["warning", "stderr", "on stderr js"],
      ["warning", "logging", "careful with js"],
      ["error", "logging", "bad js"],
    ]);
    assert.deepEqual(said(await admin.endpointLogs("chatty", { job: job.id, limit: 1 })), [
      ["info", "stdout", "no newline at the end"],
    ]);
    await assert.rejects(client.endpointLogs("chatty"), Forbidden);  // an admin's, with keys
    const bad = await admin.endpointLogs("chatty", { level: "loud" }).catch((e) => e);
    assert.ok(bad instanceof BadRequest, String(bad));
    assert.match(bad.message, /level: one of/);
  });

  test("an endpoint's metadata names its workers' models", async () => {
    const found = await client.endpointMetadata("chatty");
    assert.equal(found.name, "chatty");
    assert.equal(found.revision, 1);
    assert.equal(found.workers.length, 1);
    assert.equal(found.workers_differ, false);
    await assert.rejects(client.endpointMetadata("nope"), NotFound);
  });
});
