"""Media through real processes: an API server converting uploads, a remote `modelport
worker` getting the converted media and sending media back, the client round trip."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from modelport import Client
from tests.conftest import WORKER_TOKEN, Serve, Workers, online, wait_for, worker_args
from tests.test_media import data_url, jpeg, noisy_jpeg, png, png_bomb, wav

pytestmark = pytest.mark.e2e

ENDPOINTS = ("inspect", "voice", "album", "paint", "tone", "thumbs", "configured", "mirror")


@pytest.fixture
def remote(serve: Serve, workers: Workers, tmp_path: Path) -> str:
    server = (
        serve(["--worker-token", WORKER_TOKEN, "--store", f"sqlite:///{tmp_path}/jobs.db"])
        .start()
        .wait_ready()
    )
    workers(worker_args(server, "tests/models/media.py")).start()
    wait_for(
        lambda: all(online(server, name) for name in ENDPOINTS), 90, "the media workers online"
    )
    return server.url


def test_remote_workers_get_converted_media_and_send_media_back(
    remote: str, tmp_path: Path
) -> None:
    path = tmp_path / "cat.jpg"
    path.write_bytes(jpeg(64, 64))
    with Client(remote) as client:
        out = client.predict("inspect", image=str(path), note="remote", k=4)
        assert out["size"] == [32, 16] and out["mode"] == "RGB" and out["k"] == 4
        assert client.predict("voice", audio=wav(1.0, 44100, 2))["sample_rate"] == 16000
        assert client.predict("thumbs", image=PILImage.new("RGB", (64, 32))) == [8, 4]
        job = client.submit("paint", width=20, height=10, steps=2).wait(timeout=60)
        assert job.output_image().size == (20, 10)
        assert job.data["progress"]["data"]["preview"].startswith("data:image/jpeg")
        tone = client.submit("tone", seconds=0.5).wait(timeout=60)
        assert tone.output_audio().frames == 4000
        album = client.submit("album", images=[path, png(PILImage.new("L", (3, 3)))])
        assert album.wait(timeout=60).output_image(index=1).size == (3, 3)
    r = httpx.post(
        f"{remote}/endpoints/configured/jobs",
        files={
            "image": ("a.png", png(PILImage.new("RGBA", (100, 70))), "image/png"),
            "voice": ("v.wav", wav(0.5, 22050, 2), "audio/wav"),
        },
        timeout=60,
    )
    assert r.json()["output"] == {"size": [64, 40], "mode": "RGB", "voice": 8000}
    r = httpx.post(
        f"{remote}/endpoints/paint/jobs",
        json={"input": {}},
        headers={"accept": "image/png"},
        timeout=60,
    )
    assert r.headers["content-type"] == "image/png"
    assert PILImage.open(io.BytesIO(r.content)).size == (64, 48)


def test_bad_files_are_refused_at_submit_in_the_remote_path(remote: str) -> None:
    for endpoint, field, body in (
        ("inspect", "image", noisy_jpeg()[:4000]),
        ("inspect", "image", png_bomb()),
        ("voice", "audio", b"ID3\x03\x00\x00\x00\x00\x00\x00"),
        ("voice", "audio", wav(6.0, 8000, 1)),
    ):
        r = httpx.post(
            f"{remote}/endpoints/{endpoint}/jobs",
            json={"input": {field: data_url(body)}},
            timeout=30,
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    depths = httpx.get(f"{remote}/endpoints/inspect", timeout=10).json()
    assert depths["queue_depth"] == 0 and depths["running"] == 0


def test_a_4_mb_image_goes_to_a_remote_worker_and_back(remote: str) -> None:
    pixels = np.random.default_rng(2).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    big = png(PILImage.fromarray(pixels))
    assert len(big) > 4_000_000
    r = httpx.post(
        f"{remote}/endpoints/mirror/jobs",
        content=big,
        headers={"content-type": "image/png", "accept": "image/png"},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:500]
    back = np.asarray(PILImage.open(io.BytesIO(r.content)))
    assert np.array_equal(back, pixels[:, ::-1])
