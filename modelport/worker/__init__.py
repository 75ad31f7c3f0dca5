"""The worker SDK's serving loops: the runner and its transports.

Depends on the wire, errors, spec and model modules only, never on server code.
"""

from modelport.worker.runner import Runner
from modelport.worker.transport import Transport

__all__ = ["Runner", "Transport"]
