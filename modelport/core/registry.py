"""The registry: the endpoints this server knows (with their specs) and the workers serving
them, shared with the other servers through the store when it is shared."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import Conflict, NotFound, SpecError, Unavailable
from modelport.spec import EndpointSpec, spec_differences, spec_from_dict
from modelport.stores.base import JobStore
from modelport.wire import WorkerInfo

log = logging.getLogger("modelport.core")

LOCAL_PREFIX = "local:"
WORKER_TTL = 3600.0
"""Seconds a silent worker stays listed (as offline) in a shared store."""
SAVE_EVERY = 5.0
"""Seconds between saves of a busy worker's record to a shared store."""
KEPT_REVISIONS = 8
"""Earlier revisions of a replaced endpoint kept for the workers (and queued jobs) of them."""
STATE = "_endpoint"
"""The key of a stored spec that holds the endpoint's revision, state and earlier revisions."""
DISABLED_RETRY = 30
"""The ``Retry-After`` of a submit to a disabled endpoint: a person must enable it."""


@dataclass
class Endpoint:
    """What the registry knows of one endpoint beyond its current spec: its revision
    (1, 2, ... one more per replacement), whether it takes jobs, and its earlier revisions
    (for workers of them and the jobs validated against them)."""

    revision: int = 1
    state: str = "enabled"
    """``enabled``, ``disabled`` (submits refused, queued jobs wait) or ``deleting``
    (submits refused, queued and running jobs finish, then it is removed)."""
    reason: str | None = None
    earlier: dict[int, EndpointSpec] = field(default_factory=dict)
    drain: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "state": self.state,
            "reason": self.reason,
            "drain": self.drain,
            "earlier": {str(r): s.to_dict() for r, s in self.earlier.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        earlier = {}
        for rev, raw in dict(data.get("earlier") or {}).items():
            try:
                earlier[int(rev)] = spec_from_dict(raw)
            except (SpecError, TypeError, ValueError) as e:
                log.warning("ignoring a stored earlier spec that does not load: %s", e)
        return cls(
            int(data.get("revision", 1)),
            str(data.get("state", "enabled")),
            data.get("reason"),
            earlier,
            bool(data.get("drain", True)),
        )


def split_stored(data: dict[str, Any]) -> tuple[dict[str, Any], Endpoint | None]:
    """A stored spec: the spec's own dict and the endpoint's state (None: a tombstone
    has no spec; a spec stored by a worker has no state)."""
    data = dict(data)
    raw = data.pop(STATE, None)
    return data, None if raw is None else Endpoint.from_dict(raw)


@dataclass
class Worker:
    """A worker as the server sees it."""

    id: str
    info: WorkerInfo
    joined_at: float
    last_seen: float
    jobs_done: int = 0
    compute_time: float = 0.0
    saved_at: float = 0.0
    owner: str | None = None
    """The id of the credential it registered with (a key id, or the worker token's)."""
    revisions: dict[str, int] = field(default_factory=dict)
    """The revision of each endpoint's spec it serves (it runs only jobs of that revision)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "endpoints": self.info.endpoints,
            "revisions": self.revisions,
            "max_batch_size": self.info.max_batch_size,
            "metadata": self.info.metadata,
            "joined_at": self.joined_at,
            "last_seen": self.last_seen,
            "jobs_done": self.jobs_done,
            "compute_time": self.compute_time,
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Worker:
        info = WorkerInfo(
            data["name"], list(data["endpoints"]), data["max_batch_size"], data["metadata"]
        )
        return cls(
            data["id"],
            info,
            data["joined_at"],
            data["last_seen"],
            data["jobs_done"],
            data["compute_time"],
            owner=data.get("owner"),
            revisions=dict(data.get("revisions") or {}),
        )

    def public(self, now: float, offline_after: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "state": "online" if now - self.last_seen <= offline_after else "offline",
            "last_seen": self.last_seen,
            "max_batch_size": self.info.max_batch_size,
            "metadata": self.info.metadata,
            "revisions": self.revisions,
            "jobs_done": self.jobs_done,
            "mean_compute_time": self.compute_time / self.jobs_done if self.jobs_done else None,
        }


def _spec_conflict(worker: str, endpoint: str, differences: list[str]) -> Conflict:
    return Conflict(
        f"worker {worker!r} serves {endpoint!r} with a spec that differs from the server's: "
        + "; ".join(differences)
    )


class Registry:
    """Endpoint specs and workers, by name and id."""

    def __init__(
        self,
        store: JobStore,
        *,
        instance: str,
        offline_after: float,
        clock: Callable[[], float],
        background: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.store = store
        self.instance = instance
        self.offline_after = offline_after
        self.clock = clock
        self._background = background
        self.specs: dict[str, EndpointSpec] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.deleted: dict[str, int] = {}
        """Endpoints deleted here, with their last revision: a worker bringing one is refused."""
        self.workers: dict[str, Worker] = {}

    def add_endpoint(self, spec: EndpointSpec) -> None:
        self.specs[spec.name] = spec
        self.endpoints.setdefault(spec.name, Endpoint())

    def spec(self, name: str) -> EndpointSpec:
        try:
            return self.specs[name]
        except KeyError:
            deleted = self.deleted.get(name)
            if deleted is not None:
                raise NotFound(
                    f"endpoint {name!r} was deleted (revision {deleted}); PUT /endpoints/{name}"
                    " defines it again"
                ) from None
            raise NotFound(f"no endpoint named {name!r}") from None

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint's revision and state (404 if there is no such endpoint)."""
        self.spec(name)
        state = self.endpoints.get(name)  # not setdefault: it would make an Endpoint each call
        if state is None:
            state = self.endpoints[name] = Endpoint()
        return state

    def revision(self, name: str) -> int:
        return self.endpoint(name).revision

    def spec_of(self, name: str, revision: int | None) -> EndpointSpec | None:
        """The spec of one revision of an endpoint (None if it is not kept)."""
        current = self.specs.get(name)
        if current is None:
            return None
        state = self.endpoints.get(name) or Endpoint()
        if revision is None or revision == state.revision:
            return current
        return state.earlier.get(revision)

    def check_open(self, name: str) -> None:
        """Refuse (503, with the reason) a submit to a disabled or deleting endpoint."""
        state = self.endpoint(name)
        if state.state == "enabled":
            return
        if state.state == "deleting":
            why = f"endpoint {name!r} is being deleted; its queued jobs finish first"
        else:
            why = f"endpoint {name!r} is disabled"
        if state.reason:
            why += f": {state.reason}"
        raise Unavailable(why, retry_after=DISABLED_RETRY)

    def takes_work(self, name: str) -> bool:
        """Whether workers may lease jobs of the endpoint now (not while disabled)."""
        state = self.endpoints.get(name)
        return name in self.specs and (state is None or state.state != "disabled")

    async def find_spec(self, name: str) -> EndpointSpec:
        """An endpoint's spec, looked for in the shared store if this server does not know it
        (a worker may have brought it to another server)."""
        if name not in self.specs:
            await self.sync_specs()
        return self.spec(name)

    def stored(self, name: str) -> dict[str, Any]:
        """The endpoint as the store keeps it: its spec and its state."""
        return {**self.specs[name].to_dict(), STATE: self.endpoints[name].to_dict()}

    async def save(self, name: str) -> None:
        """Write the endpoint's spec and state (or its tombstone) to the store."""
        if name in self.specs:
            await self.store.put_spec(self.stored(name), replace=True)
        else:
            tomb = {"revision": self.deleted.get(name, 0), "state": "deleted"}
            await self.store.put_spec({"name": name, STATE: tomb}, replace=True)

    def define(self, spec: EndpointSpec) -> tuple[Endpoint, bool]:
        """Add an endpoint, or make ``spec`` the next revision of one (its earlier spec kept
        for the jobs and workers of it); (its state, whether anything changed)."""
        current = self.specs.get(spec.name)
        state = self.endpoints.get(spec.name)
        if current is not None and state is not None:
            if not spec_differences(current, spec):
                return state, False
            state.earlier[state.revision] = current
            for old in sorted(state.earlier)[:-KEPT_REVISIONS]:
                del state.earlier[old]
            state.revision += 1
        else:
            state = Endpoint(revision=self.deleted.pop(spec.name, 0) + 1)
            self.endpoints[spec.name] = state
        self.specs[spec.name] = spec
        return state, True

    def set_state(self, name: str, state: str, reason: str | None, drain: bool = True) -> Endpoint:
        endpoint = self.endpoint(name)
        endpoint.state, endpoint.reason, endpoint.drain = state, reason, drain
        return endpoint

    def remove(self, name: str) -> None:
        """Forget an endpoint (its tombstone remembers the revision it had)."""
        state = self.endpoints.pop(name, None)
        self.specs.pop(name, None)
        self.deleted[name] = state.revision if state is not None else 0

    async def sync_specs(self) -> None:
        """Learn what other servers sharing the store did: endpoints that workers brought
        to them, and endpoints added, replaced, disabled or deleted there."""
        if not self.store.shared:
            return
        await self.load()

    async def load(self) -> None:
        """Take the endpoints recorded in the store that are newer than this server's."""
        for data in await self.store.specs():
            raw, state = split_stored(data)
            name = raw.get("name")
            if not isinstance(name, str):
                continue
            if state is not None and state.state == "deleted":
                ours = self.endpoints.get(name)
                if ours is None or ours.revision <= state.revision:
                    self.remove(name)
                    self.deleted[name] = state.revision
                continue
            ours = self.endpoints.get(name)
            if name in self.specs and (state is None or ours is None):
                continue
            if ours is not None and state is not None and ours.revision > state.revision:
                continue
            try:
                spec = spec_from_dict(raw)
            except (SpecError, TypeError, ValueError) as e:
                log.warning("ignoring a stored spec that does not load: %s", e)
                continue
            if ours is not None and state is not None and ours.revision == state.revision:
                ours.state, ours.reason, ours.drain = state.state, state.reason, state.drain
                continue
            self.specs[name] = spec
            self.endpoints[name] = state or Endpoint()
            self.deleted.pop(name, None)

    async def publish_specs(self) -> None:
        """This server's own endpoints (config files, local models) are the contract: one
        that differs from the store's becomes its next revision."""
        stored = [split_stored(data) for data in await self.store.specs()]
        for name, spec in list(self.specs.items()):
            ours = self.endpoints.setdefault(name, Endpoint())
            for raw, state in stored:
                if raw.get("name") != name or state is None:
                    continue
                if state.state == "deleted":
                    ours.revision = state.revision + 1
                    break
                try:
                    theirs = spec_from_dict(raw)
                except (SpecError, TypeError, ValueError):
                    theirs = None
                ours.earlier = state.earlier
                ours.state, ours.reason, ours.drain = state.state, state.reason, state.drain
                ours.revision = state.revision
                if theirs is not None and spec_differences(theirs, spec):
                    ours.earlier[state.revision] = theirs
                    ours.revision += 1
                break
            await self.save(name)

    async def record_shared(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec]
    ) -> Conflict | None:
        """Record a joining worker's specs in the shared store, so that one endpoint has one
        spec wherever its workers connect; the conflict if another server took a different
        spec for one of them meanwhile."""
        if not self.store.shared:
            return None
        for spec in specs:
            raw, state = split_stored(await self.store.put_spec(spec.to_dict()))
            if state is not None and state.state == "deleted":
                return self._deleted_refusal(info, spec.name, state.revision)
            stored = spec_from_dict(raw)
            differences = spec_differences(stored, spec)
            if differences and not self._earlier_match(spec, state):
                self.specs[spec.name] = stored
                return _spec_conflict(info.name, spec.name, differences)
        return None

    @staticmethod
    def _earlier_match(spec: EndpointSpec, state: Endpoint | None) -> bool:
        return state is not None and any(
            not spec_differences(old, spec) for old in state.earlier.values()
        )

    @staticmethod
    def _deleted_refusal(info: WorkerInfo, name: str, revision: int) -> Conflict:
        return Conflict(
            f"worker {info.name!r} brings a spec for endpoint {name!r}, which was deleted"
            f" (revision {revision}); define it again with PUT /endpoints/{name} first"
        )

    def _revision_of(self, worker: str, name: str, brought: EndpointSpec) -> int:
        """The revision of the endpoint a worker's spec is: the current one, or an earlier
        one still kept (the worker runs that revision's jobs); a conflict otherwise."""
        state = self.endpoints.setdefault(name, Endpoint())
        differences = spec_differences(self.specs[name], brought)
        if not differences:
            return state.revision
        for revision, old in sorted(state.earlier.items(), reverse=True):
            if not spec_differences(old, brought):
                return revision
        raise _spec_conflict(worker, name, differences)

    def register(
        self,
        info: WorkerInfo,
        specs: Sequence[EndpointSpec] = (),
        *,
        worker_id: str | None = None,
        owner: str | None = None,
    ) -> Worker:
        """Admit a worker. An endpoint it brings is defined by it if no one defined it yet;
        otherwise its spec must equal the existing one (the message says what differs)."""
        brought = {s.name: s for s in specs}
        revisions = {}
        for name in info.endpoints:
            if name in self.deleted and name not in self.specs:
                raise self._deleted_refusal(info, name, self.deleted[name])
            if name not in brought:
                revisions[name] = self.revision(name)
            elif name in self.specs:
                revisions[name] = self._revision_of(info.name, name, brought[name])
        for name, spec in brought.items():
            if name not in self.specs:
                self.add_endpoint(spec)
                revisions[name] = self.revision(name)
        now = self.clock()
        wid = worker_id or secrets.token_hex(8)
        previous = self.workers.get(wid)
        worker = Worker(
            id=wid, info=info, joined_at=now, last_seen=now, owner=owner, revisions=revisions
        )
        if previous is not None:
            worker.jobs_done, worker.compute_time = previous.jobs_done, previous.compute_time
        self.workers[wid] = worker
        self._save(worker)
        return worker

    async def forget(self, worker_id: str) -> Worker:
        """Take a worker off the lists (here and in a shared store)."""
        worker = self.workers.pop(worker_id)
        if self.store.shared:
            await self.store.delete_worker(worker_id)
        return worker

    def _save(self, worker: Worker) -> None:
        """Share a worker's record with the other servers (when the store is shared)."""
        if not self.store.shared:
            return
        worker.saved_at = worker.last_seen
        self._background(self.store.put_worker(worker.to_dict(), WORKER_TTL))

    def local_worker_id(self, name: str) -> str:
        return f"{LOCAL_PREFIX}{self.instance}:{name}"

    def worker(self, worker_id: str) -> Worker:
        """A registered worker, marked as seen now."""
        try:
            worker = self.workers[worker_id]
        except KeyError:
            raise NotFound(f"no worker with id {worker_id!r}; register first") from None
        worker.last_seen = self.clock()
        if worker.last_seen - worker.saved_at >= SAVE_EVERY:
            self._save(worker)
        return worker

    def lease_duration(self, worker: Worker) -> float:
        durations = [
            spec.lease_duration
            for name in worker.info.endpoints
            if (spec := self.spec_of(name, worker.revisions.get(name))) is not None
        ]
        return max(durations, default=60.0)

    async def all_workers(self) -> list[Worker]:
        """Every known worker: this server's, and with a shared store the others' too."""
        if not self.store.shared:
            return list(self.workers.values())
        known = {w["id"]: Worker.from_dict(w) for w in await self.store.list_workers()}
        for worker in self.workers.values():
            other = known.get(worker.id)
            if other is None or other.last_seen <= worker.last_seen:
                known[worker.id] = worker
        return list(known.values())

    async def workers_online(self, endpoint: str, revision: int | None = None) -> list[Worker]:
        """The live workers of an endpoint (of one revision of it, if given)."""
        now = self.clock()
        return [
            w
            for w in await self.all_workers()
            if endpoint in w.info.endpoints
            and now - w.last_seen <= self.offline_after
            and (revision is None or w.revisions.get(endpoint, 1) == revision)
        ]
