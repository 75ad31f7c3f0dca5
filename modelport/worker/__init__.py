"""Serving loops for models: the runner and its transports."""

from modelport.worker.runner import LocalTransport, Runner, Transport

__all__ = ["LocalTransport", "Runner", "Transport"]
