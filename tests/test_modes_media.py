"""Media in the local modes, as users run them (subprocesses: argv, stdin, stdout, exit
code): ``modelport test`` synthesizes files from the spec, ``run`` takes files as flags
(a path, ``-`` for stdin, a data URL), ``pipe --raw`` reads one file from stdin."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_modes_cli import modelport

pytestmark = pytest.mark.e2e

DIGITS = "examples/digits/model.py"
MEDIA = "tests/models/media_modes.py"


def seven_png(directory: Path) -> Path:
    """A handwritten 7 from scikit-learn's digits, as a 40x40 RGB PNG in ``directory``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images[list(digits.target).index(7)] / 16 * 255).astype(np.uint8)
    path = directory / "seven.png"
    Image.fromarray(pixels).resize((40, 40), Image.Resampling.NEAREST).convert("RGB").save(path)
    return path


@pytest.fixture(scope="module")
def seven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seven_png(tmp_path_factory.mktemp("digits"))


def test_test_synthesizes_an_image_and_a_tone_for_the_examples() -> None:
    digits = modelport("test", DIGITS, "--count", "1")
    assert digits.returncode == 0, digits.out + digits.err
    assert "3 cases, 0 failed" in digits.out
    audio = modelport("test", "examples/audio/model.py", "--endpoint", "loudness", "--json")
    assert audio.returncode == 0, audio.out + audio.err
    (case,) = json.loads(audio.out)["cases"]
    assert case["ok"] and len(case["seconds"]) == 2
    assert case["input"]["audio"].startswith("<0.5 s 440 Hz tone, 16000 Hz x1 WAV, ")


def test_test_fits_synthesized_media_inside_the_specs_bounds(tmp_path: Path) -> None:
    """Nothing in Narrow resizes: a file outside its bounds is refused, so passing means
    the synthesized ones fit (size, mode, format, rate, channels, duration, bytes)."""
    proc = modelport("test", f"{MEDIA}:Narrow", "--json", "--count", "1")
    assert proc.returncode == 0, proc.out + proc.err
    case, optional = json.loads(proc.out)["cases"]
    assert case["ok"] and optional["ok"], case["errors"] + optional["errors"]
    shown = case["input"]
    assert shown["image"].startswith("<grey 100x60 LA WEBP image, ")
    assert shown["audio"].startswith("<1 s 440 Hz tone, 8000 Hz x2 FLAC, ")
    assert shown["blob"] == "<bytes, 8 bytes>"
    assert "thumb" not in shown  # optional: the defaults case leaves it out, the next gives it
    assert optional["name"].startswith('thumb="<grey 4x4 RGB JPEG image, ')
    assert optional["input"]["thumb"].startswith("<grey 4x4 RGB JPEG image, ")

    small = tmp_path / "small.webp"
    Image.new("LA", (64, 64), (128, 255)).save(small)
    import soundfile

    short = tmp_path / "short.flac"
    soundfile.write(short, np.zeros((4000, 2), np.float32), 8000, format="FLAC")
    refused = modelport(
        "run", f"{MEDIA}:Narrow", "--image", str(small), "--audio", str(short), "--blob", "-",
        stdin=b"123456789",
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.err == (
        "modelport: error: image: the image is 64x64, smaller than the minimum 100x40; "
        "audio: the audio is 0.5 seconds; the minimum is 1; "
        "blob: the file is 9 bytes; the limit is 8\n"
    )


def test_test_fails_a_broken_media_model() -> None:
    proc = modelport("test", f"{MEDIA}:Misread", "--count", "1")
    assert proc.returncode == 1
    assert "FAIL defaults" in proc.out
    assert "TypeError: cannot unpack non-iterable int object" in proc.out


def test_test_synthesizes_a_clip_or_says_why_it_cannot(tmp_path: Path) -> None:
    proc = modelport("test", f"{MEDIA}:Film", "--json", "--count", "1")
    assert proc.returncode == 0, proc.out + proc.err
    (case,) = json.loads(proc.out)["cases"]
    assert case["input"]["video"].startswith("<grey 32x24 clip, 2 frames at 5 fps, MKV, ")
    # without PyAV (an `av` that cannot be imported, first on the path)
    (tmp_path / "av").mkdir()
    (tmp_path / "av" / "__init__.py").write_text("raise ImportError('no PyAV here')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    mp3 = modelport("test", f"{MEDIA}:Podcast")
    assert mp3.returncode == 2
    assert mp3.err == (
        "modelport: error: episode: cannot make a test file: it takes MP3 only, and modelport"
        " writes WAV, FLAC, OGG\n"
    )
    missing = modelport("test", f"{MEDIA}:Film", env={"PYTHONPATH": path})
    assert missing.returncode == 2
    assert missing.err == (
        "modelport: error: video: a video input needs PyAV, the video extra: "
        "pip install 'modelport[video]'\n"
    )


def test_run_takes_a_media_file_as_a_path_stdin_or_a_data_url(seven: Path) -> None:
    helped = modelport("run", DIGITS, "--help")
    assert "--image FILE" in helped.out
    assert "image file: a path, - for stdin, or a data URL; required" in " ".join(
        helped.out.split()
    )
    by_path = modelport("run", DIGITS, "--image", str(seven), "--top-k", "1")
    assert by_path.returncode == 0, by_path.err
    assert json.loads(by_path.out) == {"digit": 7, "guesses": [{"digit": 7, "probability": 1.0}]}
    missing = modelport("run", DIGITS, "--image", "nope.png")
    assert missing.returncode == 2
    assert "argument --image: cannot read nope.png: No such file or directory" in missing.err
    not_image = modelport("run", DIGITS, "--image", DIGITS)
    assert not_image.returncode == 2
    assert (
        not_image.err == "modelport: error: image: not a JPEG, PNG, WEBP, GIF, BMP or TIFF file\n"
    )
    empty = modelport("run", DIGITS, "--image", "-")
    assert empty.returncode == 2
    assert "argument --image: stdin is empty" in empty.err


def test_run_takes_several_files_as_paths_data_urls_and_stdin(seven: Path, tmp_path: Path) -> None:
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (30, 10), "white").save(wide)
    url = "data:image/png;base64," + base64.b64encode(seven.read_bytes()).decode()
    proc = modelport(
        "run", f"{MEDIA}:Sizes", "--images", str(wide), url, "-", stdin=seven.read_bytes()
    )
    assert proc.returncode == 0, proc.err
    assert json.loads(proc.out) == [[30, 10], [40, 40], [40, 40]]


def test_pipe_raw_reads_one_file_from_stdin(seven: Path) -> None:
    proc = modelport("pipe", DIGITS, "--raw", stdin=seven.read_bytes())
    assert proc.returncode == 0, proc.err
    (line,) = proc.out.splitlines()
    assert json.loads(line)["digit"] == 7
    refused = modelport("pipe", DIGITS, "--raw", stdin=b"not an image")
    assert refused.returncode == 2
    assert json.loads(refused.out) == {
        "index": 0,
        "error": "image: not a JPEG, PNG, WEBP, GIF, BMP or TIFF file",
    }
    failed = modelport("pipe", f"{MEDIA}:Misread", "--raw", stdin=seven.read_bytes())
    assert failed.returncode == 1
    assert json.loads(failed.out)["error"] == "TypeError: cannot unpack non-iterable int object"
    for target, count in (("examples/echo/model.py", 0), (f"{MEDIA}:Narrow", 4)):
        usage = modelport("pipe", target, "--raw", stdin=seven.read_bytes())
        assert usage.returncode == 2
        assert usage.out == ""
        assert "--raw needs a model with exactly one media input" in usage.err
        assert f"has {count}\n" in usage.err
