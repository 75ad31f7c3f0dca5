"""Media inputs and outputs in the embedded path: types, ways in, conversion, limits, bad
files, outputs, previews, and the client's uploads."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pytest
import soundfile
from openapi_spec_validator import validate
from PIL import Image as PILImage

import modelport
from modelport import Input, Media
from modelport.media import codec
from modelport.media.codec import MediaError, MediaLimits
from modelport.server.app import Settings
from modelport.spec import FieldSpec, spec_from_dict, spec_from_signature, spec_from_toml
from tests.conftest import AppFactory, InProcessApp
from tests.models.media import (
    Album,
    Checksum,
    Configured,
    Inspect,
    Mirror,
    Paint,
    Thumbs,
    Tone,
    Voice,
)


def jpeg(width: int = 64, height: int = 32, colour: Any = (200, 30, 30), **save: Any) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), colour).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def noisy_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def pixel(image: PILImage.Image, xy: tuple[int, int]) -> Any:
    return image.getpixel(xy)


def png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def wav(seconds: float = 1.0, rate: int = 44100, channels: int = 2, fmt: str = "WAV") -> bytes:
    t = np.arange(int(rate * seconds), dtype=np.float32) / rate
    mono = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    samples = mono if channels == 1 else np.stack([mono] * channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image (the pixels never exist)."""
    raw = png(PILImage.new("L", (1, 1)))
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    chunk = b"IHDR" + ihdr
    return raw[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def lying_wav() -> bytes:
    """A WAV whose header claims an hour of audio, with a tenth of a second of data."""
    data = bytearray(wav(0.1, 8000, 1))
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 8000 * 4 * 3600)
    data[4:8] = struct.pack("<I", 8000 * 4 * 3600 + 36)
    return bytes(data)


@pytest.fixture
async def app(app_factory: AppFactory) -> InProcessApp:
    return await app_factory([Inspect, Voice, Album, Paint, Tone, Thumbs, Configured])


@pytest.fixture
def http(app: InProcessApp) -> httpx.AsyncClient:
    return app.http


# Types: Python and TOML make the same spec


def test_python_and_toml_make_the_same_media_spec(tmp_path: Path) -> None:
    class Both(modelport.Model):
        name = "both"

        def predict(
            self,
            image: modelport.Image = Input(
                format=["jpeg", "PNG"],
                mode="RGB",
                min_size=(256, 256),
                max_size=(2048, 2048),
                align=64,
                resize="crop",
            ),
            voice: modelport.Audio = Input(sample_rate=16000, channels=1, max_duration=60),
        ) -> Annotated[list[modelport.Image], Media(format="JPEG", quality=90)]:
            return []

    (tmp_path / "both.toml").write_text(
        "[endpoint]\nname = 'both'\n[inputs]\n"
        'image = { type = "image", format = ["JPEG", "PNG"], mode = "RGB", min_size = [256, 256],'
        ' max_size = [2048, 2048], align = 64, resize = "crop", required = true }\n'
        'voice = { type = "audio", sample_rate = 16000, channels = 1, max_duration = 60,'
        " required = true }\n"
        '[output]\ntype = "image_list"\nformat = "JPEG"\nquality = 90\n'
    )
    ours, theirs = Both.spec(), spec_from_toml(tmp_path / "both.toml")
    assert ours.to_dict() == theirs.to_dict()
    assert ours.input_schema() == theirs.input_schema()
    assert ours.output_schema() == theirs.output_schema()
    assert spec_from_dict(ours.to_dict()) == ours  # as a remote worker sends it
    image = ours.inputs["image"]
    assert (image.type, image.format, image.size, image.min_size) == (
        "image",
        ["JPEG", "PNG"],
        None,
        [256, 256],
    )
    assert ours.output is not None and ours.output.items is not None
    assert (ours.output.type, ours.output.items.format) == ("list", ["JPEG"])
    schema = ours.input_schema()["properties"]["image"]
    assert schema["type"] == "string" and "data URL" in schema["description"]


def test_media_spec_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        "[endpoint]\nname = 'bad'\n[inputs]\n"
        'a = { type = "image", format = "HEIC", mode = "XYZ", resize = "squash" }\n'
        'b = { type = "image", size = [0, 5], quality = 50 }\n'
        'c = { type = "string", sample_rate = 16000 }\n'
        'd = { type = "audio", min_duration = 5, max_duration = 1 }\n'
        '[outputs]\ne = { type = "image", format = ["PNG", "JPEG"] }\n'
    )
    with pytest.raises(modelport.SpecError) as caught:
        spec_from_toml(tmp_path / "bad.toml")
    fields = {e["field"] for e in caught.value.errors}
    assert {
        "inputs.a.format",
        "inputs.a.mode",
        "inputs.a.resize",
        "inputs.b.size",
        "inputs.b.quality",
        "inputs.c",
        "inputs.d",
        "outputs.e.format",
    } <= fields
    assert "unknown image format 'HEIC'" in str(caught.value)


def test_bytes_of_a_media_default_are_refused() -> None:
    with pytest.raises(modelport.SpecError, match="media field has no default"):
        spec_from_dict({"name": "x", "inputs": {"a": {"type": "image", "default": "abc"}}})


# Ways in


async def test_data_url_bare_base64_multipart_and_raw_body_give_the_same_job(
    http: httpx.AsyncClient,
) -> None:
    photo = jpeg(64, 32)
    answers = []
    r = await http.post(
        "/endpoints/inspect/jobs", json={"input": {"image": data_url(photo), "note": "n", "k": 2}}
    )
    answers.append(r)
    r = await http.post(
        "/endpoints/inspect/jobs",
        json={"input": {"image": base64.b64encode(photo).decode(), "note": "n", "k": 2}},
    )
    answers.append(r)
    r = await http.post(
        "/endpoints/inspect/jobs",
        files={"image": ("cat.jpg", photo, "image/jpeg")},
        data={"note": "n", "k": "2"},
    )
    answers.append(r)
    r = await http.post(
        "/endpoints/inspect/jobs?note=n&k=2",
        content=photo,
        headers={"content-type": "image/jpeg"},
    )
    answers.append(r)
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["output"]["size"] == [32, 16]
        assert r.json()["output"]["mode"] == "RGB"
        assert r.json()["output"]["k"] == 2
    job = answers[0].json()
    link = job["input"]["image"]  # the converted image, as a file of the job
    assert link == f"/jobs/{job['id']}/files/input.image"
    file = await http.get(link)
    assert file.headers["content-type"] == "image/tiff"
    assert PILImage.open(io.BytesIO(file.content)).size == (32, 16)


async def test_a_form_field_of_the_wrong_type_is_422_naming_it(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/inspect/jobs",
        files={"image": ("cat.jpg", jpeg(), "image/jpeg")},
        data={"k": "many"},
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "k", "message": "expected an integer, got 'many'"}]


async def test_a_missing_file_in_a_form_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/inspect/jobs", files={"note": (None, "x")})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "image"


async def test_a_raw_body_needs_one_media_input(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/configured/jobs", content=jpeg(), headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 400
    assert "exactly one file input" in r.json()["detail"]
    r = await http.post(
        "/endpoints/inspect/jobs", content=wav(), headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 422
    assert "this input takes image" in r.json()["detail"]


async def test_an_upload_over_the_body_limit_is_413(app_factory: AppFactory) -> None:
    app = await app_factory([Inspect], settings=Settings(max_body_size=20_000))
    big = jpeg(400, 400, quality=100) + b"\0" * 30_000
    r = await app.http.post(
        "/endpoints/inspect/jobs", files={"image": ("a.jpg", big, "image/jpeg")}
    )
    assert r.status_code == 413
    r = await app.http.post(
        "/endpoints/inspect/jobs", content=big, headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 413


async def test_a_list_of_images_from_json_and_from_a_form(http: httpx.AsyncClient) -> None:
    first, second = jpeg(10, 10, (0, 0, 0)), png(PILImage.new("RGB", (4, 6), "white"))
    r = await http.post(
        "/endpoints/album/jobs",
        json={"input": {"images": [data_url(first), data_url(second, "image/png")]}},
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert [o[:23] for o in job["output"]] == ["data:image/jpeg;base64,"] * 2
    r2 = await http.post(
        "/endpoints/album/jobs",
        files=[
            ("images", ("a.jpg", first, "image/jpeg")),
            ("images", ("b.png", second, "image/png")),
        ],
    )
    assert r2.status_code == 200, r2.text
    file = await http.get(f"/jobs/{job['id']}/files/output.1")
    assert file.headers["content-type"] == "image/jpeg"
    inverted = PILImage.open(io.BytesIO(file.content))
    assert inverted.size == (4, 6) and inverted.mode == "L" and pixel(inverted, (0, 0)) < 10
    r = await http.post("/endpoints/album/jobs", json={"input": {"images": [data_url(first)] * 5}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "images"


# Bad files: 422 naming the field and the reason, nothing queued


@pytest.mark.parametrize(
    ("endpoint", "field", "body", "reason"),
    [
        ("inspect", "image", noisy_jpeg()[:4000], "damaged or truncated"),
        ("inspect", "image", png_bomb(), "too many pixels"),
        ("inspect", "image", b"GIF89a not really", "not a JPEG, PNG, WEBP, GIF, BMP or TIFF file"),
        ("inspect", "image", b"", "the file is empty"),
        ("voice", "audio", b"", "the file is empty"),
        ("voice", "audio", b"ID3\x03\x00\x00\x00\x00\x00\x00", "not a WAV, FLAC, OGG or MP3 file"),
        ("voice", "audio", wav(6.0, 8000, 1), "longer than the limit of 5 seconds"),
    ],
    ids=[
        "truncated-jpeg",
        "png-bomb",
        "garbage",
        "empty-image",
        "zero-mp3",
        "header-only-mp3",
        "too-long",
    ],
)
async def test_bad_files_are_422_naming_the_field(
    app: InProcessApp, endpoint: str, field: str, body: bytes, reason: str
) -> None:
    mime = "image/jpeg" if field == "image" else "audio/mpeg"
    for request in (
        {"json": {"input": {field: data_url(body, mime) if body else ""}}},
        {"files": {field: ("f", body, mime)}} if body else None,
    ):
        if request is None:
            continue
        r = await app.http.post(f"/endpoints/{endpoint}/jobs", **request)
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert errors[0]["field"] == field
        if body:
            assert reason in errors[0]["message"]
    assert await app.server.broker.store.queue_depths() == {}


async def test_a_wav_whose_header_lies_is_read_for_what_it_holds(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/voice/jobs", content=lying_wav(), headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"]["frames"] == 1600  # 0.1 s at 16 kHz, not the hour it claims


def test_a_png_bomb_under_pillows_own_limit_is_refused_before_decoding() -> None:
    with pytest.raises(MediaError, match="40000x1000 is 40000000 pixels; the limit is 1000000"):
        codec.convert(png_bomb(40_000, 1_000), image_field(), MediaLimits(max_pixels=1_000_000))


async def test_a_wrong_format_is_named(app_factory: AppFactory) -> None:
    class OnlyJpeg(modelport.Model):
        name = "only-jpeg"

        def predict(self, image: modelport.Image = Input(format=["JPEG"])) -> int:
            return image.width

    app = await app_factory([OnlyJpeg])
    r = await app.http.post(
        "/endpoints/only-jpeg/jobs",
        json={"input": {"image": data_url(png(PILImage.new("RGB", (3, 3))), "image/png")}},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "image: not a JPEG file"


async def test_a_url_is_not_fetched(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/inspect/jobs", json={"input": {"image": "http://127.0.0.1:1/cat.jpg"}}
    )
    assert r.status_code == 422
    assert "URLs are not fetched" in r.json()["detail"]


async def test_the_server_wide_pixel_limit_holds(app_factory: AppFactory) -> None:
    app = await app_factory([Inspect], settings=Settings(max_image_pixels=1000))
    r = await app.http.post(
        "/endpoints/inspect/jobs", json={"input": {"image": data_url(jpeg(64, 32))}}
    )
    assert r.status_code == 422
    assert "2048 pixels; the limit is 1000" in r.json()["detail"]


# Conversion options, each on the codec the server uses


def image_field(**options: Any) -> FieldSpec:
    return FieldSpec(type="image", **options)


def converted(data: bytes, **options: Any) -> PILImage.Image:
    encoded = codec.convert(data, image_field(**options), MediaLimits())
    return PILImage.open(io.BytesIO(encoded.data))


def two_halves(width: int = 40, height: int = 20) -> bytes:
    image = PILImage.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return png(image)


def test_resize_crop_pad_fit_and_stretch() -> None:
    source = two_halves(40, 20)
    crop = converted(source, size=[10, 10], resize="crop")
    assert crop.size == (10, 10)
    assert pixel(crop, (0, 5))[0] > 200 and pixel(crop, (9, 5))[2] > 200
    pad = converted(source, size=[20, 20], resize="pad")
    assert pad.size == (20, 20) and pixel(pad, (10, 0)) == (0, 0, 0)  # black bars
    fit = converted(source, size=[20, 20], resize="fit")
    assert fit.size == (20, 10)
    stretch = converted(source, size=[10, 30], resize="stretch")
    assert stretch.size == (10, 30)


def test_a_size_without_resize_is_a_requirement() -> None:
    assert converted(two_halves(40, 20), size=[40, 20]).size == (40, 20)
    with pytest.raises(MediaError, match="the image is 40x20; the endpoint takes 10x10"):
        converted(two_halves(40, 20), size=[10, 10])
    with pytest.raises(MediaError, match="smaller than the minimum 64x64"):
        converted(two_halves(40, 20), min_size=[64, 64])
    with pytest.raises(MediaError, match="larger than the maximum 20x20"):
        converted(two_halves(40, 20), max_size=[20, 20])


def test_min_and_max_size_scale_with_resize() -> None:
    assert converted(two_halves(40, 20), max_size=[20, 20], resize="fit").size == (20, 10)
    assert converted(two_halves(40, 20), min_size=[80, 80], resize="stretch").size == (160, 80)


def test_align() -> None:
    assert converted(two_halves(70, 50), align=16, resize="crop").size == (64, 48)
    assert converted(two_halves(70, 50), align=16, resize="pad").size == (80, 64)
    assert converted(two_halves(70, 50), align=16, resize="stretch").size == (64, 48)
    with pytest.raises(MediaError, match="multiples of 16"):
        converted(two_halves(70, 50), align=16)


def test_mode_conversion_puts_transparency_on_white() -> None:
    clear = PILImage.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = converted(png(clear), mode="RGB")
    assert out.mode == "RGB" and pixel(out, (0, 0)) == (255, 255, 255)
    assert converted(jpeg(), mode="L").mode == "L"


def test_exif_orientation_is_applied() -> None:
    image = PILImage.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    assert converted(buffer.getvalue()).size == (20, 40)


def test_an_image_already_as_declared_is_not_reencoded() -> None:
    photo = jpeg(32, 16)
    assert codec.convert(photo, image_field(mode="RGB"), MediaLimits()).data == photo


def test_audio_is_resampled_and_mixed_to_mono() -> None:
    field = FieldSpec(type="audio", sample_rate=16000, channels=1)
    for fmt in ("WAV", "FLAC", "OGG", "MP3"):
        encoded = codec.convert(wav(1.0, 44100, 2, fmt), field, MediaLimits())
        audio = codec.decode_audio(encoded.data)
        assert audio.sample_rate == 16000 and audio.channels == 1, fmt
        assert audio.samples.dtype == np.float32
        assert abs(audio.frames - 16000) < 1200, (fmt, audio.frames)  # MP3 pads a little


def test_mono_becomes_stereo_but_six_channels_do_not_become_two() -> None:
    stereo = codec.decode_audio(
        codec.convert(wav(0.1, 8000, 1), FieldSpec(type="audio", channels=2), MediaLimits()).data
    )
    assert stereo.channels == 2
    with pytest.raises(MediaError, match="has 6 channels; the endpoint takes 2"):
        codec.convert(wav(0.1, 8000, 6), FieldSpec(type="audio", channels=2), MediaLimits())


def test_audio_duration_limits() -> None:
    with pytest.raises(MediaError, match="minimum is 1"):
        codec.convert(wav(0.2, 8000, 1), FieldSpec(type="audio", min_duration=1), MediaLimits())
    with pytest.raises(MediaError, match=r"longer than the limit of 0\.5 seconds"):
        codec.convert(wav(1, 8000, 1), FieldSpec(type="audio"), MediaLimits(max_duration=0.5))
    with pytest.raises(MediaError, match="not a FLAC file"):
        codec.convert(wav(0.1, 8000, 1), FieldSpec(type="audio", format=["FLAC"]), MediaLimits())


async def test_the_model_gets_resampled_float32_audio(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/voice/jobs",
        content=wav(1.0, 44100, 2, "FLAC"),
        headers={"content-type": "audio/flac"},
    )
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["sample_rate"] == 16000 and out["channels"] == 1 and out["dtype"] == "float32"
    assert out["frames"] == 16000 and 0.45 < out["peak"] < 0.55


# Outputs


async def test_an_image_output_is_a_png_data_url_with_its_text(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/paint/jobs", json={"input": {"width": 30, "height": 20}})
    job = r.json()
    assert job["output"].startswith("data:image/png;base64,")
    image = PILImage.open(io.BytesIO(base64.b64decode(job["output"].split(",", 1)[1])))
    assert image.size == (30, 20) and image.info["prompt"] == "gradient 30x20"


async def test_accept_image_png_answers_the_file(http: httpx.AsyncClient) -> None:
    for accept in ("image/png", "image/*", "application/json;q=0.5, image/png"):
        r = await http.post("/endpoints/paint/jobs", json={"input": {}}, headers={"accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert r.headers["x-job-status"] == "succeeded"
        assert PILImage.open(io.BytesIO(r.content)).size == (64, 48)
        job = await http.get(f"/jobs/{r.headers['x-job-id']}", headers={"accept": "image/png"})
        assert job.content == r.content
    r = await http.post(
        "/endpoints/paint/jobs", json={"input": {}}, headers={"accept": "audio/wav"}
    )
    assert r.headers["content-type"] == "application/json"  # not what this endpoint makes
    r = await http.post(
        "/endpoints/paint/jobs", json={"input": {}}, headers={"accept": "image/png;q=0, */*"}
    )
    assert r.headers["content-type"] == "application/json"  # image/png refused by q=0


async def test_a_failed_job_answers_json_even_asked_for_an_image(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/paint/jobs", json={"input": {"width": 0}}, headers={"accept": "image/png"}
    )
    assert r.headers["content-type"] == "application/json"
    assert r.json()["status"] == "failed"


async def test_job_files_and_previews(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/paint/jobs", json={"input": {"steps": 4}})
    job = r.json()
    assert job["progress"]["fraction"] > 0
    preview = job["progress"]["data"]["preview"]
    assert preview.startswith("data:image/jpeg;base64,")
    file = await http.get(f"/jobs/{job['id']}/files/preview")
    assert file.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(file.content)).size == (64, 48)
    output = await http.get(f"/jobs/{job['id']}/files/output")
    assert output.headers["content-type"] == "image/png"
    assert output.headers["x-job-status"] == "succeeded"
    for missing in ("nothing", "output.3", "output.x"):
        assert (await http.get(f"/jobs/{job['id']}/files/{missing}")).status_code == 404
    assert (await http.get("/jobs/nope/files/output")).status_code == 404


async def test_previews_arrive_in_the_event_stream(http: httpx.AsyncClient) -> None:
    async with http.stream(
        "POST",
        "/endpoints/paint/jobs",
        json={"input": {"steps": 2}},
        headers={"accept": "application/jsonl"},
    ) as response:
        lines = [line async for line in response.aiter_lines() if line.strip()]
    import orjson

    events = [orjson.loads(line) for line in lines]
    previews = [e for e in events if e["event"] == "progress" and "preview" in e["data"]["data"]]
    assert previews and previews[-1]["data"]["data"]["preview"].startswith("data:image/jpeg")


async def test_an_audio_output_is_encoded_as_declared(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/tone/jobs", json={"input": {"seconds": 0.25}})
    output = r.json()["output"]
    assert output.startswith("data:audio/flac;base64,")
    audio = codec.decode_audio(base64.b64decode(output.split(",", 1)[1]))
    assert audio.sample_rate == 8000 and audio.frames == 2000
    r = await http.post(
        "/endpoints/tone/jobs", json={"input": {}}, headers={"accept": "audio/flac"}
    )
    assert r.headers["content-type"] == "audio/flac"


async def test_a_model_returning_no_image_fails_clearly(app_factory: AppFactory) -> None:
    class Wrong(modelport.Model):
        name = "wrong"

        def predict(self) -> modelport.Image:
            return 42  # type: ignore[return-value]

    app = await app_factory([Wrong])
    r = await app.http.post("/endpoints/wrong/jobs", json={"input": {}})
    assert r.json()["status"] == "failed"
    assert "expected a PIL image or a numpy array, got int" in r.json()["error"]


async def test_numpy_and_bytes_outputs(app_factory: AppFactory) -> None:
    class Arrays(modelport.Model):
        name = "arrays"

        def predict(self) -> dict[str, modelport.Image]:
            return {"a": np.zeros((4, 5, 3), np.uint8)}  # type: ignore[dict-item]

    class Raw(modelport.Model):
        name = "raw"

        def predict(self) -> modelport.Image:
            return jpeg(3, 3)  # type: ignore[return-value]

    app = await app_factory([Arrays, Raw])
    r = await app.http.post("/endpoints/arrays/jobs", json={"input": {}})
    assert r.json()["output"]["a"].startswith("data:image/png")
    r = await app.http.post("/endpoints/raw/jobs", json={"input": {}})
    assert r.json()["output"].startswith("data:image/jpeg")


# Other model shapes


async def test_predict_batch_and_toml_models_get_converted_media(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/thumbs/jobs", json={"input": {"image": data_url(jpeg(64, 32))}})
    assert r.json()["output"] == [8, 4], r.text
    r = await http.post(
        "/endpoints/configured/jobs",
        files={
            "image": ("a.png", png(PILImage.new("RGBA", (100, 70))), "image/png"),
            "voice": ("v.wav", wav(0.5, 22050, 2), "audio/wav"),
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"size": [64, 40], "mode": "RGB", "voice": 8000}


def test_a_direct_call_converts_as_when_served(tmp_path: Path) -> None:
    model = Inspect()
    out = model.predict(image=PILImage.new("RGBA", (64, 32)))
    assert out["size"] == [32, 16] and out["mode"] == "RGB"
    path = tmp_path / "cat.jpg"
    path.write_bytes(jpeg(64, 64))
    assert model.predict(image=str(path))["size"] == [32, 16]  # type: ignore[arg-type]
    assert model.predict(image=path.read_bytes())["size"] == [32, 16]  # type: ignore[arg-type]


# Docs


async def test_openapi_describes_uploads_and_files(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    validate(document)
    body = document["paths"]["/endpoints/inspect/jobs"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]
    assert form["properties"]["image"]["format"] == "binary"
    assert "image/*" in body
    album = document["paths"]["/endpoints/album/jobs"]["post"]["requestBody"]["content"]
    assert album["multipart/form-data"]["schema"]["properties"]["images"]["type"] == "array"
    answers = document["paths"]["/endpoints/paint/jobs"]["post"]["responses"]["200"]["content"]
    assert "image/png" in answers
    assert "/jobs/{id}/files/{name}" in document["paths"]


# Client


def test_spec_from_signature_takes_list_media_options() -> None:
    def predict(self: Any, images: list[modelport.Image] = Input(mode="L", max_length=2)) -> None:
        pass

    spec = spec_from_signature(predict, name="x")
    f = spec.inputs["images"]
    assert f.type == "list" and f.max_length == 2 and f.items == FieldSpec(type="image", mode="L")


async def test_client_uploads_paths_bytes_and_images(app: InProcessApp, tmp_path: Path) -> None:
    path = tmp_path / "cat.jpg"
    path.write_bytes(jpeg(64, 64))
    async with modelport.AsyncClient("http://test", transport=app.transport()) as client:
        for value in (str(path), path, path.read_bytes(), PILImage.new("RGB", (64, 64))):
            out = await client.predict("inspect", image=value, note="cat.jpg")
            assert out["size"] == [32, 16] and out["note"] == "cat.jpg"
        job = await client.submit("paint", width=10, height=10)
        await job.wait(timeout=30)
        assert (await job.output_image()).size == (10, 10)
        assert (await job.output_file())[:4] == b"\x89PNG"
        tone = await client.submit("tone", seconds=0.1)
        await tone.wait(timeout=30)
        assert (await tone.output_audio()).frames == 800
        album = await client.submit("album", images=[path, PILImage.new("L", (3, 3))])
        await album.wait(timeout=30)
        assert (await album.output_image(index=1)).size == (3, 3)


# Large outputs: files of the job, not inline in its record


@pytest.mark.parametrize("store_kind", ["memory", "sqlite", "redis"])
async def test_large_outputs_are_stored_once_and_served_as_files(
    app_factory: AppFactory, store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
        "redis": request.getfixturevalue("redis_url") if store_kind == "redis" else "",
    }[store_kind]
    app = await app_factory([Mirror, Album], store=url, settings=Settings(max_inline_media=2000))
    noisy = {"input": {"image": data_url(noisy_jpeg())}}
    r = await app.http.post("/endpoints/mirror/jobs", json=noisy)
    job = r.json()
    assert job["output"] == f"/jobs/{job['id']}/files/output"
    stored = await app.server.broker.store.get(job["id"])
    assert stored is not None and stored.output == job["output"]  # no bytes in the record
    file = await app.http.get(job["output"])
    assert file.headers["content-type"] == "image/png"
    assert PILImage.open(io.BytesIO(file.content)).size == (128, 128)
    binary = await app.http.post(
        "/endpoints/mirror/jobs", json=noisy, headers={"accept": "image/png"}
    )
    assert binary.content == file.content
    small = png(PILImage.new("L", (2, 2)))
    r = await app.http.post(
        "/endpoints/album/jobs",
        json={"input": {"images": [data_url(noisy_jpeg()), data_url(small, "image/png")]}},
    )
    outputs = r.json()["output"]
    assert outputs[0] == f"/jobs/{r.json()['id']}/files/output.0"
    assert outputs[1].startswith("data:image/jpeg")  # a small one stays inline
    async with modelport.AsyncClient("http://test", transport=app.transport()) as client:
        album = await client.job(r.json()["id"])
        assert (await album.output_image(index=0)).size == (128, 128)
        assert (await album.output_image(index=1)).size == (2, 2)


async def test_a_purged_job_takes_its_files_along(app_factory: AppFactory, tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path}/jobs.db"):
        app = await app_factory([Mirror], store=url, settings=Settings(max_inline_media=2000))
        body = {"input": {"image": data_url(noisy_jpeg())}}
        job = (await app.http.post("/endpoints/mirror/jobs", json=body)).json()
        store = app.server.broker.store
        assert await store.get_blob(job["id"], "output") is not None
        assert await store.purge(completed_before=float("inf"), limit=10) == 1
        assert await store.get_blob(job["id"], "output") is None
        assert (await app.http.get(f"/jobs/{job['id']}/files/output")).status_code == 404


async def test_bytes_inputs_and_outputs_pass_undecoded(app_factory: AppFactory) -> None:
    import hashlib

    app = await app_factory([Checksum])
    blob = b"\x00\x01 any file \xff"
    digest = hashlib.sha256(blob).hexdigest()
    for request in (
        {"json": {"input": {"blob": data_url(blob, "application/octet-stream")}}},
        {"json": {"input": {"blob": base64.b64encode(blob).decode(), "reverse": True}}},
        {"files": {"blob": ("f.bin", blob)}, "data": {"reverse": "true"}},
        {"content": blob, "headers": {"content-type": "application/octet-stream"}},
    ):
        r = await app.http.post("/endpoints/checksum/jobs", **request)
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert out["sha256"] == digest
        echoed = base64.b64decode(out["echo"].split(",", 1)[1])
        assert echoed in (blob, blob[::-1])
    r = await app.http.post(
        "/endpoints/checksum/jobs", content=b"x" * 2000, headers={"content-type": "image/png"}
    )
    assert r.status_code == 422 and "the limit is 1000" in r.json()["detail"]
    assert Checksum().predict(blob=blob)["sha256"] == digest
    spec = Checksum.spec()
    assert spec.inputs["blob"].type == "bytes"
    assert spec.input_schema()["properties"]["blob"]["contentMediaType"] == (
        "application/octet-stream"
    )


def test_previews_are_encoded_at_most_once_per_progress_interval() -> None:
    from modelport.media.outputs import Previews

    spec = Paint.spec()
    previews = Previews(interval=3600)
    black, white = PILImage.new("L", (8, 8), 0), PILImage.new("L", (8, 8), 255)
    first = previews.encode(spec, {"preview": black}, final=False)["preview"]
    again = previews.encode(spec, {"preview": white}, final=False)["preview"]
    assert again == first  # within the interval: the latest encoded one, not a new encoding
    last = previews.encode(spec, {"preview": white}, final=True)["preview"]
    assert last != first
    assert pixel(PILImage.open(io.BytesIO(base64.b64decode(last.split(",")[1]))), (0, 0)) > 200


async def test_a_jobs_files_are_only_its_owners(app_factory: AppFactory) -> None:
    from modelport.keys import new_key

    app = await app_factory([Paint], settings=Settings(auth="keys"))
    secrets = {}
    for name in ("owner", "stranger"):
        key, secret = new_key("client", name=name)
        await app.server.broker.store.put_key(key.to_dict())
        secrets[name] = {"Authorization": f"Bearer {secret}"}
    r = await app.http.post("/endpoints/paint/jobs", json={"input": {}}, headers=secrets["owner"])
    path = f"/jobs/{r.json()['id']}/files/output"
    assert (await app.http.get(path, headers=secrets["owner"])).status_code == 200
    assert (await app.http.get(path, headers=secrets["stranger"])).status_code == 404
    assert (await app.http.get(path)).status_code == 401
