"""Fetching a media input given as an http(s) URL, only from hosts the server allows.

The server fetches nothing unless started with ``--fetch-allow``. A host is allowed by
name (``images.example.com``), by suffix (``*.example.com``) or by ``*`` (any); every
address it resolves to is checked, and loopback, private, link-local and other
non-public addresses are refused unless the host is listed by its exact name. The
connection goes to the address that was checked (no second DNS answer), each redirect is
checked again, and the body is cut off past the byte limit and the time limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from modelport.media.codec import MediaError

MAX_REDIRECTS = 5


@dataclass
class FetchPolicy:
    """Which hosts may be fetched, and how much and how long."""

    allow: Sequence[str] = ()
    max_bytes: int = 64 * 1024 * 1024
    timeout: float = 10.0

    def allows(self, host: str) -> tuple[bool, bool]:
        """(allowed at all, allowed to be a non-public address: listed by exact name)."""
        host = host.lower().rstrip(".")
        exact = any(entry.lower() == host for entry in self.allow)
        wildcard = any(
            entry == "*" or (entry.startswith("*.") and host.endswith(entry[1:].lower()))
            for entry in self.allow
        )
        return exact or wildcard, exact


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body at ``url``, or :class:`MediaError` saying why not."""
    if not policy.allow:
        raise MediaError("URLs are not fetched by this server; send the file itself")
    deadline = time.monotonic() + policy.timeout
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaError(f"cannot fetch {url!r}: only http and https URLs")
        host = parts.hostname
        allowed, private_ok = policy.allows(host)
        if not allowed:
            raise MediaError(f"cannot fetch from {host}: not a host this server fetches from")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _checked_address(host, port, private_ok)
        response = _get(url, parts.scheme, host, address, port, policy, deadline)
        if response is None:
            raise MediaError(f"fetching {url} took longer than {policy.timeout:g} seconds")
        status, location, body = response
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise MediaError(f"fetching {url} answered HTTP {status}")
        return body
    raise MediaError(f"fetching {url}: more than {MAX_REDIRECTS} redirects")


def _checked_address(host: str, port: int, private_ok: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise MediaError(f"cannot fetch from {host}: the name does not resolve ({e})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not private_ok and not ip.is_global:
            raise MediaError(
                f"cannot fetch from {host}: it resolves to {address}, a loopback, private or"
                " link-local address (list the host in --fetch-allow to allow it)"
            )
    return addresses[0]


def _get(
    url: str,
    scheme: str,
    host: str,
    address: str,
    port: int,
    policy: FetchPolicy,
    deadline: float,
) -> tuple[int, str | None, bytes] | None:
    """One GET to the checked address (the Host header and TLS name are the host's)."""
    import httpx  # here: a server that fetches nothing, and the local modes, never load it

    parts = urlsplit(url)
    netloc = f"[{address}]" if ":" in address else address
    target = parts._replace(netloc=f"{netloc}:{port}").geturl()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    try:
        with (
            httpx.Client(timeout=remaining, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET",
                target,
                headers={"host": parts.netloc.rsplit("@", 1)[-1]},
                extensions={"sni_hostname": host} if scheme == "https" else {},
            ) as response,
        ):
            if response.status_code != 200:
                return response.status_code, response.headers.get("location"), b""
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                raise MediaError(f"{url} is {declared} bytes; the limit is {policy.max_bytes}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > policy.max_bytes:
                    raise MediaError(f"{url} is over the limit of {policy.max_bytes} bytes")
                if time.monotonic() > deadline:
                    return None
            return 200, None, bytes(body)
    except httpx.TimeoutException:
        return None
    except httpx.HTTPError as e:
        raise MediaError(f"cannot fetch {url}: {e}") from None
