"""The core: job lifecycle, leases, batching windows and retries, written once for every store.

Server-side only: the worker SDK and the client never import it.
"""

from modelport.core.broker import Broker
from modelport.core.registry import LOCAL_PREFIX, Worker

__all__ = ["LOCAL_PREFIX", "Broker", "Worker"]
