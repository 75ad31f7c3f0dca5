"""What the LitServe baselines share: how they are served (one API server on loopback, CPU
workers, uvloop and httptools as modelport and the FastAPI baselines use)."""

from typing import Any

import litserve as ls


def serve(api: Any, port: int, workers: int = 1) -> None:
    """Serve ``api`` (a LitAPI) on 127.0.0.1:``port`` with ``workers`` inference workers."""
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=workers)
    server.run(
        host="127.0.0.1",
        port=port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
