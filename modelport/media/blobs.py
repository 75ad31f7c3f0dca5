"""Large media outputs kept out of job records: past a size, a data URL in a result is
stored once as a file of the job and replaced by its URL, ``/jobs/{id}/files/{name}``."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from typing import Any

from modelport.settings import Limits
from modelport.spec import EndpointSpec
from modelport.stores.base import JobStore
from modelport.wire import Result

FILES = "/jobs/{id}/files/{name}"


async def offload(
    store: JobStore, spec: EndpointSpec, results: Sequence[Result], limits: Limits
) -> list[Result]:
    """``results`` with each data URL over ``limits.max_inline_media`` characters stored as
    a file; the same output always makes the same URLs, so a result sent twice matches."""
    most = limits.max_inline_media
    if not spec.media_outputs or most is None:
        return list(results)
    ttl = spec.result_ttl or limits.result_ttl
    out: list[Result] = []
    for r in results:
        if r.output is None:
            out.append(r)
            continue
        files: list[tuple[str, str, bytes]] = []
        top = "output" if spec.output is not None or not isinstance(r.output, dict) else None
        output = _walk(r.output, top, most, r.job_id, files)
        for name, mime, data in files:
            await store.put_blob(r.job_id, name, mime, data, None if ttl is None else ttl * 2)
        out.append(dataclasses.replace(r, output=output) if files else r)
    return out


def _walk(value: Any, name: str | None, most: int, job_id: str, files: list[Any]) -> Any:
    if isinstance(value, str):
        if len(value) <= most or not value.startswith("data:") or name is None:
            return value
        head, _, payload = value.partition(",")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return value
        mime = head[5:].split(";")[0] or "application/octet-stream"
        files.append((name, mime, data))
        return FILES.format(id=job_id, name=name)
    if isinstance(value, list):
        return [_walk(v, _join(name, str(i)), most, job_id, files) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _walk(v, _join(name, str(k)), most, job_id, files) for k, v in value.items()}
    return value


def _join(name: str | None, part: str) -> str:
    return part if name is None else f"{name}.{part}"
