"""The registry: the endpoints this server knows (with their specs) and the workers serving
them, shared with the other servers through the store when it is shared."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from modelport.errors import Conflict, NotFound, SpecError
from modelport.spec import EndpointSpec, spec_differences, spec_from_dict
from modelport.stores.base import JobStore
from modelport.wire import WorkerInfo

log = logging.getLogger("modelport.core")

LOCAL_PREFIX = "local:"
WORKER_TTL = 3600.0
"""Seconds a silent worker stays listed (as offline) in a shared store."""
SAVE_EVERY = 5.0
"""Seconds between saves of a busy worker's record to a shared store."""


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "endpoints": self.info.endpoints,
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
        )

    def public(self, now: float, offline_after: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "state": "online" if now - self.last_seen <= offline_after else "offline",
            "last_seen": self.last_seen,
            "max_batch_size": self.info.max_batch_size,
            "metadata": self.info.metadata,
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
        self.workers: dict[str, Worker] = {}

    def add_endpoint(self, spec: EndpointSpec) -> None:
        self.specs[spec.name] = spec

    def spec(self, name: str) -> EndpointSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise NotFound(f"no endpoint named {name!r}") from None

    async def find_spec(self, name: str) -> EndpointSpec:
        """An endpoint's spec, looked for in the shared store if this server does not know it
        (a worker may have brought it to another server)."""
        if name not in self.specs:
            await self.sync_specs()
        return self.spec(name)

    async def sync_specs(self) -> None:
        """Learn the endpoints that workers brought to the other servers sharing the store."""
        if not self.store.shared:
            return
        for data in await self.store.specs():
            if data.get("name") not in self.specs:
                try:
                    spec = spec_from_dict(data)
                except (SpecError, TypeError, ValueError) as e:
                    log.warning("ignoring a stored spec that does not load: %s", e)
                    continue
                self.specs.setdefault(spec.name, spec)

    async def publish_specs(self) -> None:
        """This server's own endpoints (config files, local models) are the contract."""
        for spec in list(self.specs.values()):
            await self.store.put_spec(spec.to_dict(), replace=True)

    async def record_shared(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec]
    ) -> Conflict | None:
        """Record a joining worker's specs in the shared store, so that one endpoint has one
        spec wherever its workers connect; the conflict if another server took a different
        spec for one of them meanwhile."""
        if not self.store.shared:
            return None
        for spec in specs:
            stored = spec_from_dict(await self.store.put_spec(spec.to_dict()))
            differences = spec_differences(stored, spec)
            if differences:
                self.specs[spec.name] = stored
                return _spec_conflict(info.name, spec.name, differences)
        return None

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
        for name in info.endpoints:
            if name not in brought:
                self.spec(name)
            elif name in self.specs:
                differences = spec_differences(self.specs[name], brought[name])
                if differences:
                    raise _spec_conflict(info.name, name, differences)
        for name, spec in brought.items():
            self.specs.setdefault(name, spec)
        now = self.clock()
        wid = worker_id or secrets.token_hex(8)
        previous = self.workers.get(wid)
        worker = Worker(id=wid, info=info, joined_at=now, last_seen=now, owner=owner)
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
        return max(self.specs[name].lease_duration for name in worker.info.endpoints)

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

    async def workers_online(self, endpoint: str) -> list[Worker]:
        now = self.clock()
        return [
            w
            for w in await self.all_workers()
            if endpoint in w.info.endpoints and now - w.last_seen <= self.offline_after
        ]
