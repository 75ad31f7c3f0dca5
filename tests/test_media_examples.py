"""The media examples, served in-process as `make run` serves them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage

from modelport.media.codec import decode_audio
from modelport.media.upload import file_bytes
from tests.conftest import ROOT, AppFactory, InProcessApp
from tests.test_media import png, wav


async def serving(app_factory: AppFactory, example: str) -> InProcessApp:
    from modelport.loader import load_models

    return await app_factory(load_models(str(ROOT / "examples" / example / "model.py")))


def digit_image(pixels: np.ndarray, *, ink_on_paper: bool) -> bytes:
    """One of scikit-learn's 8x8 digits (0-16, light on dark) as a 64x64 picture."""
    grey = (pixels / 16 * 255).astype(np.uint8)
    if ink_on_paper:
        grey = 255 - grey
    return png(PILImage.fromarray(grey, "L").resize((64, 64), PILImage.Resampling.NEAREST))


async def test_digits_reads_uploaded_pictures(app_factory: AppFactory) -> None:
    from sklearn.datasets import load_digits

    app = await serving(app_factory, "digits")
    data = load_digits()
    right = 0
    for i in range(0, 200, 10):
        r = await app.http.post(
            "/endpoints/digits/jobs",
            files={"image": ("d.png", digit_image(data.images[i], ink_on_paper=i % 20 == 0))},
            data={"top_k": "2"},
        )
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert len(out["guesses"]) == 2
        right += out["digit"] == int(data.target[i])
    assert right >= 18


async def test_painter_previews_and_paints_the_same_picture_for_the_same_seed(
    app_factory: AppFactory,
) -> None:
    http = (await serving(app_factory, "painter")).http
    body = {"input": {"prompt": "a red sunset", "width": 64, "height": 32, "steps": 3}}
    first = await http.post("/endpoints/painter/jobs", json=body, headers={"accept": "image/png"})
    again = await http.post("/endpoints/painter/jobs", json=body, headers={"accept": "image/png"})
    assert first.headers["content-type"] == "image/png" and first.content == again.content
    picture = PILImage.open(io.BytesIO(first.content))
    assert picture.size == (64, 32) and picture.info["prompt"] == "a red sunset"
    job = (await http.get(f"/jobs/{first.headers['x-job-id']}")).json()
    assert job["progress"]["data"]["preview"].startswith("data:image/jpeg")


async def test_loudness_measures_and_tones_synthesise(app_factory: AppFactory) -> None:
    http = (await serving(app_factory, "audio")).http
    r = await http.post(
        "/endpoints/loudness/jobs",
        content=wav(1.0, 44100, 2, "FLAC"),
        headers={"content-type": "audio/flac"},
    )
    out = r.json()["output"]
    assert out["duration"] == 1.0 and abs(out["pitch_hz"] - 440) < 2
    assert -7 < out["peak_dbfs"] < -5 and -10 < out["rms_dbfs"] < -8  # a 0.5 sine
    r = await http.post("/endpoints/tones/jobs", json={"input": {"notes": ["A4", "A5"]}})
    audio = decode_audio(file_bytes(r.json()["output"]))
    assert audio.sample_rate == 16000 and abs(audio.duration - 0.8) < 1e-3
    r = await http.post("/endpoints/tones/jobs", json={"input": {"notes": ["H2"]}})
    assert r.json()["status"] == "failed" and "not a note: 'H2'" in r.json()["error"]
