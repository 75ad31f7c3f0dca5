"""What this server counts as jobs come and go, so the hot path need not ask the store."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Depth:
    value: int = 0
    """Queued jobs as last counted, plus those this server queued since."""
    read_at: float = -1.0
    inflight: int = 0
    """Submits on their way into the store."""


@dataclass
class Tallies:
    depths: dict[str, Depth] = field(default_factory=dict)
    """Per endpoint, the queue depth as this server knows it."""
    job_time: dict[str, float] = field(default_factory=dict)
    """Per endpoint, a moving average of the compute seconds per job."""
    cancelled: dict[str, set[str]] = field(default_factory=dict)
    """Per worker, the jobs it holds that were cancelled since it last asked."""

    def depth(self, endpoint: str) -> Depth:
        return self.depths.setdefault(endpoint, Depth())

    def timed(self, endpoint: str, per_job: float) -> None:
        previous = self.job_time.get(endpoint)
        self.job_time[endpoint] = per_job if previous is None else 0.8 * previous + 0.2 * per_job
