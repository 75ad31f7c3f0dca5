"""A real server over HTTPS with API keys: the Python client, the openai package and a remote
worker all work, each trusting the test's own CA; and no secret shows anywhere they saw."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelport import Client, Unauthorized
from modelport.keys import new_key
from modelport.stores import store_from_url
from tests.conftest import Serve, ServerProcess, Workers, wait_for


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("modelport test CA"))
        .issuer_name(_name("modelport test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def make_keys(url: str) -> dict[str, tuple[str, str, str]]:
    """name -> (secret, hash, id) of a client, a worker and an admin key in the store."""
    store = store_from_url(url)
    await store.open()
    made = {}
    try:
        for scope in ("client", "worker", "admin"):
            key, secret = new_key(scope, name=f"tls-{scope}")
            await store.put_key(key.to_dict())
            made[scope] = (secret, key.hash, key.id)
    finally:
        await store.close()
    return made


def wait_ready_https(server: ServerProcess, trust: ssl.SSLContext, timeout: float = 60.0) -> None:
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=trust, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.logs()}")
            try:
                if http.get(server.url + "/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"server not ready:\n{server.logs()}")


@pytest.mark.timeout(180)
def test_client_openai_and_a_remote_worker_over_https_with_keys(
    serve: Serve, workers: Workers, tmp_path: Path
) -> None:
    ca, cert, key_file = make_certificates(tmp_path)
    trust = ssl.create_default_context(cafile=str(ca))
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    keys = asyncio.run(make_keys(store))
    server = serve(
        [
            "tests/models/basic.py:Add",
            "tests/models/stream.py:Chatter",
            "--store",
            store,
            "--auth",
            "keys",
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key_file),
            "--forwarded-allow-ips",
            "127.0.0.1",
        ]
    )
    server.url = server.url.replace("http://", "https://")
    server.start()
    wait_ready_https(server, trust)
    seen: list[str] = []
    client_secret, worker_secret, admin_secret = (keys[s][0] for s in ("client", "worker", "admin"))

    with Client(server.url, api_key=client_secret, ca_file=str(ca)) as client:
        assert client.predict("add", a=2, b=3) == {"sum": 5.0}
        with Client(server.url, ca_file=str(ca)) as nobody, pytest.raises(Unauthorized):
            nobody.predict("add", a=1)

        with openai.OpenAI(
            base_url=server.url + "/v1",
            api_key=client_secret,
            http_client=openai.DefaultHttpxClient(verify=trust),
        ) as ai:
            reply = ai.chat.completions.create(
                model="chatter",
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=3,
            )
        assert reply.choices[0].message.content == "w0 w1 w2 "
        with (
            openai.OpenAI(
                base_url=server.url + "/v1",
                api_key="mp_wrong",
                http_client=openai.DefaultHttpxClient(verify=trust),
                max_retries=0,
            ) as wrong,
            pytest.raises(openai.AuthenticationError),
        ):
            wrong.models.list()

        token_file = tmp_path / "worker-key"
        token_file.write_text(worker_secret + "\n")
        worker = workers(
            [
                "tests/models/basic.py:Slow",
                "--server",
                server.url,
                "--token-file",
                str(token_file),
                "--ca-file",
                str(ca),
            ]
        ).start()

        def slow_online() -> bool:
            with httpx.Client(verify=trust, timeout=5) as http:
                r = http.get(
                    server.url + "/endpoints",
                    headers={"Authorization": f"Bearer {client_secret}"},
                )
                seen.append(r.text)
                return any(e["name"] == "slow" and e["workers_online"] for e in r.json())

        wait_for(slow_online, 60, f"the remote worker online over HTTPS:\n{worker.logs()}")
        job = client.submit("slow", {"n": 7, "seconds": 0})
        assert job.result(timeout=30) == {"n": 7}
        seen.append(str(job.data))

        with httpx.Client(verify=trust, timeout=5) as http:
            admin = {"Authorization": f"Bearer {admin_secret}"}
            for path in ("/keys", "/openapi.json", "/metrics", f"/jobs/{job.id}"):
                seen.append(http.get(server.url + path, headers=admin).text)
            events = http.get(
                server.url + f"/jobs/{job.id}/events",
                headers={**admin, "accept": "application/jsonl"},
            )
            seen.append(events.text)
    worker.stop()  # first: with its server gone it would retry until its stop timed out
    server.stop()
    seen += [server.logs(), worker.logs()]
    everything = "\n".join(seen)
    for scope, (secret, digest, _) in keys.items():
        assert secret not in everything, f"the {scope} key's secret leaked"
        assert digest not in everything, f"the {scope} key's hash leaked"
    assert keys["client"][2] in everything  # key ids are not secret: the listing shows them


def test_a_trusted_proxy_names_the_client_and_an_untrusted_one_does_not(tmp_path: Path) -> None:
    """``--forwarded-allow-ips 127.0.0.2``: a request from 127.0.0.2 (the proxy) is from the
    address its ``X-Forwarded-For`` names (and of the scheme of its ``X-Forwarded-Proto``), in
    the access log and for the anonymous rate limit; the same headers from 127.0.0.1 are
    ignored: the peer's address counts."""
    server = ServerProcess(
        [
            "tests/models/basic.py:Add",
            "--store",
            "memory://",
            "--forwarded-allow-ips",
            "127.0.0.2",
            "--anonymous-rate",
            "1/h",  # a bucket of one submit per address
        ],
        tmp_path / "server.log",
    )
    server.start().wait_ready()
    proxy = httpx.Client(
        base_url=server.url,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        timeout=10,
    )
    direct = httpx.Client(base_url=server.url, timeout=10)
    try:

        def submit(http: httpx.Client, forwarded: str) -> httpx.Response:
            return http.post(
                "/endpoints/add/jobs",
                json={"input": {"a": 1}},
                headers={"X-Forwarded-For": forwarded, "Prefer": "respond-async"},
            )

        assert submit(proxy, "203.0.113.7").status_code == 202
        refused = submit(proxy, "203.0.113.7")
        assert refused.status_code == 429, refused.text
        assert "address 203.0.113.7 is over its rate" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["ratelimit-policy"] == '"burst";q=1;w=3600'
        assert submit(proxy, "203.0.113.8").status_code == 202  # another client's bucket

        assert submit(direct, "198.51.100.1").status_code == 202  # 127.0.0.1's bucket
        again = submit(direct, "198.51.100.2")  # not another client: the header is ignored
        assert again.status_code == 429, again.text
        assert "address 127.0.0.1 is over its rate" in again.json()["detail"]
        # -Proto likewise: the index page's curl example is for the scheme the client used
        page = {"Accept": "text/html", "X-Forwarded-Proto": "https"}
        host = server.url.removeprefix("http://")
        assert f"https://{host}/endpoints/add/jobs" in proxy.get("/", headers=page).text
        assert f"http://{host}/endpoints/add/jobs" in direct.get("/", headers=page).text
        metrics = direct.get("/metrics").text
        assert 'modelport_key_requests_total{key="anonymous",outcome="rate"} 2.0' in metrics

        def logged() -> bool:
            return server.logs().count('"POST /endpoints/add/jobs HTTP/1.1"') >= 5

        wait_for(logged, 10, f"five access log lines:\n{server.logs()}")
        lines = [line for line in server.logs().splitlines() if "POST /endpoints" in line]
        assert sum("203.0.113.7:" in line for line in lines) == 2
        assert any("203.0.113.8:" in line for line in lines)
        assert sum("127.0.0.1:" in line for line in lines) == 2
        assert not any("198.51.100." in line or "127.0.0.2:" in line for line in lines)
    finally:
        proxy.close()
        direct.close()
        server.stop()
