"""Video inputs and outputs (PyAV): decoding, frame rate, size, limits, encoding."""

from __future__ import annotations

import io
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

import modelport
from modelport.media.codec import MediaError, MediaLimits, convert
from modelport.media.upload import file_bytes
from modelport.media.video import decode_video, encode_video
from modelport.spec import FieldSpec, spec_from_toml
from tests.conftest import AppFactory, InProcessApp
from tests.models.media import Clip
from tests.test_media import data_url


def clip(seconds: float = 1.0, fps: int = 10, width: int = 32, height: int = 24) -> bytes:
    """An MP4 whose frame i is all grey level 10 * i (mod 256)."""
    frames = np.stack(
        [np.full((height, width, 3), (10 * i) % 256, np.uint8) for i in range(int(seconds * fps))]
    )
    return encode_video(modelport.Video(frames, fps), None).data


@pytest.fixture
async def app(app_factory: AppFactory) -> InProcessApp:
    return await app_factory([Clip])


def test_frame_rate_size_and_lossless_queueing() -> None:
    f = FieldSpec(type="video", size=[16, 12], resize="stretch", fps=5)
    queued = convert(clip(1.0, 10), f, MediaLimits())
    assert queued.mime == "video/x-matroska"
    video = decode_video(queued.data)
    assert video.frames.shape == (5, 12, 16, 3) and video.fps == 5
    levels = video.frames[:, 0, 0, 0].tolist()  # every other frame of the source kept
    assert all(abs(a - b) <= 3 for a, b in zip(levels, [0, 20, 40, 60, 80], strict=True))


def test_video_limits_and_bad_files() -> None:
    with pytest.raises(MediaError, match=r"longer than the limit of 0\.5 seconds"):
        convert(clip(1.0), FieldSpec(type="video", max_duration=0.5), MediaLimits())
    with pytest.raises(MediaError, match="more than 4 frames"):
        convert(clip(1.0), FieldSpec(type="video", max_frames=4), MediaLimits())
    with pytest.raises(MediaError, match="not a WEBM file"):
        convert(clip(0.3), FieldSpec(type="video", format=["WEBM"]), MediaLimits())
    with pytest.raises(MediaError, match="not a MP4, WEBM, MKV, MOV, AVI file"):
        convert(b"\x00" * 1000, FieldSpec(type="video"), MediaLimits())
    with pytest.raises(MediaError, match="the minimum is 5"):
        convert(clip(0.5), FieldSpec(type="video", min_duration=5), MediaLimits())


async def test_a_video_endpoint_end_to_end(app: InProcessApp) -> None:
    r = await app.http.post(
        "/endpoints/clip/jobs", content=clip(1.0, 10), headers={"content-type": "video/mp4"}
    )
    assert r.status_code == 200, r.text
    output = r.json()["output"]
    assert output.startswith("data:video/webm;base64,")
    back = decode_video(file_bytes(output))
    assert back.frames.shape[1:] == (12, 16, 3) and len(back.frames) == 5
    assert back.frames[0].mean() > back.frames[-1].mean()  # reversed
    r = await app.http.post(
        "/endpoints/clip/jobs", json={"input": {"video": data_url(clip(4.0), "video/mp4")}}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "video"
    r = await app.http.post(
        "/endpoints/clip/jobs",
        json={"input": {}},
        headers={"accept": "video/webm"},
    )
    assert r.status_code == 422  # the video is required
    binary = await app.http.post(
        "/endpoints/clip/jobs",
        files={"video": ("a.mp4", clip(0.6), "video/mp4")},
        headers={"accept": "video/webm"},
    )
    assert binary.headers["content-type"] == "video/webm"
    assert av.open(io.BytesIO(binary.content)).streams.video[0].codec_context.name == "vp9"


def test_video_in_toml(tmp_path: Path) -> None:
    (tmp_path / "v.toml").write_text(
        "[endpoint]\nname = 'v'\n[inputs]\n"
        'clips = { type = "video_list", fps = 5, max_frames = 20, format = ["MP4"] }\n'
        '[output]\ntype = "video"\nformat = "MP4"\n'
    )
    spec = spec_from_toml(tmp_path / "v.toml")
    clips = spec.inputs["clips"]
    assert clips.type == "list" and clips.items == FieldSpec(
        type="video", fps=5, max_frames=20, format=["MP4"]
    )
    assert spec.output == FieldSpec(type="video", format=["MP4"])


async def test_client_uploads_a_video(app: InProcessApp, tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(clip(0.6))
    async with modelport.AsyncClient("http://test", transport=app.transport()) as client:
        job = await client.submit("clip", video=str(path))
        await job.wait(timeout=60)
        assert decode_video(await job.output_file()).frames.shape[1:] == (12, 16, 3)


async def test_openapi_knows_video(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    body = document["paths"]["/endpoints/clip/jobs"]["post"]["requestBody"]["content"]
    assert "video/*" in body
    answers = document["paths"]["/endpoints/clip/jobs"]["post"]["responses"]["200"]["content"]
    assert "video/webm" in answers


@pytest.fixture
def http(app: InProcessApp) -> httpx.AsyncClient:
    return app.http
