"""Redis over TLS (``rediss://``) as an ACL user, the password from a file or the
environment and never on a command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelport import Client
from modelport.errors import Unavailable
from modelport.stores import store_from_url
from modelport.wire import JobRecord, new_job_id
from tests.conftest import RedisServer, Serve, free_port, wait_for
from tests.test_tls_e2e import make_certificates

SECRET = "s3cret-redis-password"


class TlsRedis:
    def __init__(self, server: RedisServer, tls_port: int, ca: Path) -> None:
        self.server, self.ca = server, ca
        self.url = f"rediss://app@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """A Redis with a TLS port (certificate for 127.0.0.1) and an ACL user ``app``; its
    plain port serves only the readiness check, then its default user is switched off."""
    ca, cert, key = make_certificates(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis.log",
        extra=[
            *("--tls-port", str(tls_port), "--tls-cert-file", str(cert)),
            *("--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)),
            *("--tls-auth-clients", "no"),
        ],
    )
    server.start()
    try:
        with redis.Redis(port=server.port) as r:
            r.acl_setuser(
                "app",
                enabled=True,
                passwords=[f"+{SECRET}"],
                keys=["*"],
                channels=["*"],
                commands=["+@all"],
            )
            r.acl_setuser("default", enabled=False)
        yield TlsRedis(server, tls_port, ca)
    finally:
        server.kill()


async def test_rediss_with_an_acl_user_and_the_password_from_the_environment(
    tls_redis: TlsRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPORT_STORE_PASSWORD", SECRET)
    store = store_from_url(tls_redis.url)
    await store.open()
    try:
        job = await store.insert(
            JobRecord(id=new_job_id("e"), endpoint="e", input={}, created_at=1.0)
        )
        assert (await store.get(job.id)) is not None
    finally:
        await store.close()
    monkeypatch.setenv("MODELPORT_STORE_PASSWORD", "wrong")
    refused = store_from_url(tls_redis.url)
    with pytest.raises(Unavailable) as e:
        await refused.open()
    await refused.close()
    assert "wrong" not in str(e.value) and SECRET not in str(e.value)
    # Without the CA the server's certificate is not trusted.
    monkeypatch.setenv("MODELPORT_STORE_PASSWORD", SECRET)
    untrusted = store_from_url(tls_redis.url.partition("?")[0])
    with pytest.raises(Unavailable, match="certificate"):
        await untrusted.open()
    await untrusted.close()


def test_serve_on_rediss_with_store_password_file(
    tls_redis: TlsRedis, serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELPORT_STORE_PASSWORD", raising=False)
    secret = tmp_path / "redis-password"
    secret.write_text(SECRET + "\n")
    server = serve(
        [
            *("tests/models/basic.py:Add", "--store", tls_redis.url),
            *("--store-password-file", str(secret)),
        ]
    ).start()
    server.wait_ready()
    with Client(server.url) as c:
        assert c.predict("add", a=2, b=3) == {"sum": 5}
    assert server.proc is not None
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert SECRET.encode() not in cmdline
    wait_for(lambda: "store: rediss://" in server.logs(), 10, "the banner's store line")
    assert SECRET not in server.logs()
