"""What sits in front of the queue: precomputed tables and the result cache.

A submit whose validated input is in the endpoint's precomputed table, or was computed
within the endpoint's ``cache_ttl``, is answered without queueing a job. A cache entry is
made at the miss: it names the job that computes the result, so identical submits that
arrive while it runs wait on that job instead of queueing their own; once the job has
succeeded, the entry keeps its answer. Failed, cancelled and expired jobs, and jobs that
streamed their output, are never answered from the cache.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from modelport.core.jobs import Jobs
from modelport.errors import NotFound
from modelport.predictions import Table, input_key
from modelport.spec import EndpointSpec
from modelport.wire import JobRecord, JobStatus

log = logging.getLogger("modelport.core")

HIT, MISS, PRECOMPUTED = "hit", "miss", "precomputed"


@dataclass(slots=True)
class Answer:
    """A submit's outcome: a job to wait on, or a finished body answered without one."""

    job: JobRecord | None = None
    body: dict[str, Any] | None = None
    cache: str | None = None
    """``hit``, ``miss`` or ``precomputed`` (the ``X-Cache`` header); None when the endpoint
    has neither a cache nor a table."""


@dataclass(slots=True)
class Precomputed:
    """An endpoint's table of precomputed predictions."""

    table: Table
    version: str
    fallback: bool

    @property
    def problem(self) -> str | None:
        """Why the table cannot answer for this endpoint version, if it cannot."""
        if self.version in self.table.versions:
            return None
        found = ", ".join(sorted(self.table.versions)) or "none"
        return (
            f"{self.table.path} holds predictions of model version(s) {found},"
            f" not of the endpoint's version {self.version!r}"
        )

    def report(self) -> dict[str, Any]:
        """What ``GET /endpoints/{name}`` shows of the table."""
        return {
            "file": str(self.table.path),
            "rows": self.table.versions.get(self.version, 0),
            "model_versions": sorted(self.table.versions),
            "fallback": self.fallback,
            "problem": self.problem,
        }


class ResultCache:
    """Answers submits from the precomputed tables and the cache kept in the store."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.metrics = jobs.metrics
        self.tables: dict[str, Precomputed] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        """Keys whose miss a request of this server is turning into a job right now."""

    def add_table(self, spec: EndpointSpec, path: str) -> Precomputed:
        """Answer ``spec``'s endpoint from a predictions table (logging a version mismatch)."""
        table = Precomputed(Table(path), spec.version, spec.fallback)
        problem = table.problem
        if problem is not None:
            log.warning("precomputed table of %s not used: %s", spec.name, problem)
        self.tables[spec.name] = table
        return table

    def close(self) -> None:
        for table in self.tables.values():
            table.table.close()

    async def submit(
        self,
        endpoint: str,
        inputs: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
        own_job: bool = False,
        revision: int | None = None,
        spec: EndpointSpec | None = None,
    ) -> Answer:
        """Answer from the table or the cache if they can, else submit a job.

        ``own_job`` (a streaming request, one with a webhook), and a request with an
        idempotency key (whose retries must find the job it made), get a job of their own.
        The cache of a request with an ``owner`` (an API key's id) is that owner's: no key
        is answered with the job of another.
        """
        if spec is None:
            spec = await self.jobs.registry.find_spec(endpoint)
        if revision is None:
            revision = self.jobs.registry.revision(endpoint)
        table = self.tables.get(endpoint)
        if own_job or idempotency_key is not None or (table is None and spec.cache_ttl is None):
            job = await self.jobs.submit(
                endpoint,
                inputs,
                idempotency_key=idempotency_key,
                owner=owner,
                revision=revision,
                spec=spec,
            )
            return Answer(job)
        digest = input_key(inputs)
        if table is not None:
            answer = self._precomputed(spec, table, digest)
            if answer is not None:
                return answer
        if spec.cache_ttl is None:
            job = await self.jobs.submit(
                endpoint, inputs, owner=owner, revision=revision, spec=spec
            )
            return Answer(job, cache=MISS)
        # A replaced endpoint (revision 2 on) does not answer from its earlier revision's cache.
        version = spec.version if revision <= 1 else f"{spec.version}@{revision}"
        key = f"{spec.name}:{version}:{digest}" + (f":{owner}" if owner else "")
        return await self._cached(spec, key, inputs, owner, revision)

    def _precomputed(self, spec: EndpointSpec, table: Precomputed, digest: str) -> Answer | None:
        problem = table.problem
        found = None if problem is not None else table.table.get(digest, spec.version)
        self.metrics.cache_lookup(spec.name, "precomputed" if found else "precomputed_miss")
        if found is not None:
            body = {
                "id": None,
                "endpoint": spec.name,
                "status": JobStatus.SUCCEEDED.value,
                "input": found.input,
                "output": found.output,
                "error": None,
                "source": "precomputed",
                "model_version": found.model_version,
                "computed_at": found.created_at,
            }
            return Answer(body=body, cache=PRECOMPUTED)
        if table.fallback:
            return None
        why = f" ({problem})" if problem else ""
        raise NotFound(
            f"endpoint {spec.name!r} answers only from its precomputed table, which has no"
            f" prediction for this input{why}"
        )

    async def _cached(
        self,
        spec: EndpointSpec,
        key: str,
        inputs: dict[str, Any],
        owner: str | None,
        revision: int,
    ) -> Answer:
        ttl = spec.cache_ttl or 0.0
        while True:
            pending = self._pending.get(key)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            entry = await self.store.cache_get(key)
            if entry is not None:
                answer = await self._from_entry(spec, key, entry)
                if answer is not None:
                    return answer
            done = asyncio.get_running_loop().create_future()
            self._pending[key] = done
            try:
                job = await self.jobs.submit(spec.name, inputs, owner=owner, revision=revision)
                # Another server may have made an entry meanwhile; this job then runs uncached.
                await self.store.cache_add(
                    key, {"job": job.id}, ttl, spec.name, spec.cache_max_entries
                )
            finally:
                del self._pending[key]
                done.set_result(None)
            self.metrics.cache_lookup(spec.name, MISS)
            return Answer(job, cache=MISS)

    async def _from_entry(self, spec: EndpointSpec, key: str, entry: Any) -> Answer | None:
        """The answer an entry gives, or None (and the entry forgotten) if it gives none."""
        if isinstance(entry, dict) and isinstance(entry.get("body"), dict):
            self.metrics.cache_lookup(spec.name, HIT)
            return Answer(body={**entry["body"], "source": "cache"}, cache=HIT)
        job = await self.store.get(str(entry.get("job"))) if isinstance(entry, dict) else None
        if job is not None and not job.status.final:
            self.metrics.cache_lookup(spec.name, "coalesced")
            return Answer(job, cache=HIT)
        remaining = (
            0.0 if job is None else (spec.cache_ttl or 0.0) - (self.jobs.clock() - job.created_at)
        )
        if (
            job is not None
            and job.status is JobStatus.SUCCEEDED
            and remaining > 0
            and not await self._streamed(job)
        ):
            body = job.public()
            await self.store.cache_put(
                key, {"job": job.id, "body": body}, remaining, spec.name, spec.cache_max_entries
            )
            self.metrics.cache_lookup(spec.name, HIT)
            return Answer(body={**body, "source": "cache"}, cache=HIT)
        await self.store.cache_delete(key, spec.name)
        return None

    async def _streamed(self, job: JobRecord) -> bool:
        return any(e.type == "output" for e in await self.store.events(job.id))
