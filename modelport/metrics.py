"""Prometheus metrics of one API server process (``GET /metrics``).

Counters and histograms count what this process did; the gauges (queue depth, running
jobs, workers online) are read from the store at scrape time, so with several servers on
one Redis every server reports the same, global, gauges.

The counters and histograms are counted in plain Python (:class:`Family`) and handed to
``prometheus_client`` as metric families when scraped. Its own ``Counter`` and
``Histogram`` take a lock for each count and each bucket; a finished job touches four of
them, which cost about a tenth of a quick job's serving time.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from modelport.wire import JobRecord

_TIME_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Count:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Spread:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one above every bound
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1  # buckets are "le"
        self.sum += amount


class Family:
    """A counter or histogram family kept as plain numbers (its children are changed on the
    event loop only) and collected into ``registry`` when scraped, as
    ``prometheus_client``'s own types expose it (``_total``, ``_bucket``, ``_created``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
        buckets: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = None if buckets is None else tuple(float(b) for b in buckets)
        # the "le" labels as prometheus_client writes them ("1.0", "+Inf")
        self._les = [
            *(floatToGoString(b) for b in self.bounds or ()),  # type: ignore[no-untyped-call]
            "+Inf",
        ]
        self._children: dict[tuple[str, ...], Any] = {}
        registry.register(self)

    def labels(self, *values: str) -> Any:
        """The child of these label values: ``inc()`` for a counter, ``observe()`` for a
        histogram."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = _Count() if self.bounds is None else _Spread(self.bounds)
            self._children[values] = child
        return child

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        # as prometheus_client's own types: no _created series once they are turned off
        # (PROMETHEUS_DISABLE_CREATED_SERIES=true, or disable_created_metrics())
        created = getattr(prometheus_metrics, "_use_created", True)
        for values, child in list(self._children.items()):
            if isinstance(child, _Count):
                assert isinstance(family, CounterMetricFamily)
                family.add_metric(values, child.value, created=child.created if created else None)
                continue
            assert isinstance(family, HistogramMetricFamily)
            buckets = list(zip(self._les, itertools.accumulate(child.counts), strict=True))
            family.add_metric(values, buckets, child.sum)
            if created:
                labels = dict(zip(self.labelnames, values, strict=True))
                family.add_sample(f"{self.name}_created", labels, child.created)
        yield family

    def _family(self) -> CounterMetricFamily | HistogramMetricFamily:
        if self.bounds is None:
            return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


class Metrics:
    """The metric families, in a registry of their own (so several apps can share a process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.submitted = Family(
            "modelport_jobs_submitted", "Jobs accepted into the queue.", ["endpoint"], registry=r
        )
        self.rejected = Family(
            "modelport_jobs_rejected",
            "Submits refused because the queue was full.",
            ["endpoint"],
            registry=r,
        )
        self.finished = Family(
            "modelport_jobs_finished",
            "Jobs that reached a final state, by outcome.",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.queue_time = Family(
            "modelport_job_queue_seconds",
            "Time from submit to start.",
            ["endpoint"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.compute_time = Family(
            "modelport_job_compute_seconds",
            "Time from start to result.",
            ["endpoint"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.total_time = Family(
            "modelport_job_total_seconds",
            "Time from submit to final state.",
            ["endpoint"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.batch_size = Family(
            "modelport_batch_size",
            "Jobs per lease handed to a worker.",
            ["endpoint"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.lease_expiries = Family(
            "modelport_lease_expiries",
            "Leases that ran out or were given up by a worker.",
            ["endpoint"],
            registry=r,
        )
        self.retries = Family(
            "modelport_job_retries",
            "Jobs put back in the queue for another attempt.",
            ["endpoint"],
            registry=r,
        )
        self.cache_lookups = Family(
            "modelport_cache_lookups",
            "Submits looked up in the result cache or a precomputed table, by result: hit,"
            " miss, coalesced (waited on an identical running job), precomputed,"
            " precomputed_miss.",
            ["endpoint", "result"],
            registry=r,
        )
        self.key_requests = Family(
            "modelport_key_requests",
            "Submits per API key id (never its secret), by outcome: accepted or the limit that"
            " refused it (rate, quota, queued).",
            ["key", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelport_queue_depth", "Jobs waiting in the queue.", ["endpoint"], registry=r
        )
        self.queued_job_bytes = Gauge(
            "modelport_queued_job_bytes",
            "Bytes one queued job takes in the store (mean of the oldest; 0: none queued).",
            ["endpoint"],
            registry=r,
        )
        self.running = Gauge(
            "modelport_jobs_running", "Jobs leased to workers.", ["endpoint"], registry=r
        )
        self.workers_online = Gauge(
            "modelport_workers_online", "Workers heard from recently.", ["endpoint"], registry=r
        )

    # The children of the job path's families, looked up once per label values.
    @cache  # noqa: B019 -- one Metrics per server, kept for the process's life
    def _child(self, family: str, *labels: str) -> Any:
        return getattr(self, family).labels(*labels)

    def job_submitted(self, endpoint: str) -> None:
        self._child("submitted", endpoint).inc()

    def job_rejected(self, endpoint: str) -> None:
        self._child("rejected", endpoint).inc()

    def key_request(self, key_id: str, outcome: str) -> None:
        self.key_requests.labels(key_id, outcome).inc()

    def batch_leased(self, endpoint: str, size: int) -> None:
        self._child("batch_size", endpoint).observe(size)

    def job_requeued(self, endpoint: str) -> None:
        self._child("retries", endpoint).inc()

    def lease_lost(self, endpoint: str) -> None:
        self._child("lease_expiries", endpoint).inc()

    def cache_lookup(self, endpoint: str, result: str) -> None:
        self._child("cache_lookups", endpoint, result).inc()

    def job_finished(self, job: JobRecord) -> None:
        self._child("finished", job.endpoint, str(job.status)).inc()
        if job.started_at is not None:
            self._child("queue_time", job.endpoint).observe(job.started_at - job.created_at)
            if job.completed_at is not None:
                self._child("compute_time", job.endpoint).observe(job.completed_at - job.started_at)
        if job.completed_at is not None:
            self._child("total_time", job.endpoint).observe(job.completed_at - job.created_at)

    def render(
        self,
        depths: dict[str, dict[str, int]],
        workers: dict[str, int],
        endpoints: list[str],
        job_bytes: dict[str, float] | None = None,
    ) -> bytes:
        for name in endpoints:
            depth = depths.get(name, {})
            self.queued_job_bytes.labels(name).set((job_bytes or {}).get(name, 0))
            self.queue_depth.labels(name).set(depth.get("queued", 0))
            self.running.labels(name).set(depth.get("running", 0))
            self.workers_online.labels(name).set(workers.get(name, 0))
        return generate_latest(self.registry)
