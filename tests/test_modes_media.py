"""Media in the local modes, as users run them (subprocesses: argv, stdin, stdout, exit
code): ``modelport test`` synthesizes files from the spec, ``run`` takes files as flags
(a path, ``-`` for stdin, a data URL), ``pipe --raw`` reads one file from stdin."""

from __future__ import annotations

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
    (case,) = json.loads(proc.out)["cases"]
    assert case["ok"], case["errors"]
    shown = case["input"]
    assert shown["image"].startswith("<grey 100x60 LA WEBP image, ")
    assert shown["audio"].startswith("<1 s 440 Hz tone, 8000 Hz x2 FLAC, ")
    assert shown["blob"] == "<bytes, 8 bytes>"

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


def test_test_synthesizes_a_clip_or_says_it_needs_pyav(tmp_path: Path) -> None:
    proc = modelport("test", f"{MEDIA}:Film", "--json", "--count", "1")
    assert proc.returncode == 0, proc.out + proc.err
    (case,) = json.loads(proc.out)["cases"]
    assert case["input"]["video"].startswith("<grey 32x24 clip, 2 frames at 5 fps, MKV, ")
    # without PyAV (an `av` that cannot be imported, first on the path)
    (tmp_path / "av").mkdir()
    (tmp_path / "av" / "__init__.py").write_text("raise ImportError('no PyAV here')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    missing = modelport("test", f"{MEDIA}:Film", env={"PYTHONPATH": path})
    assert missing.returncode == 2
    assert missing.err == (
        "modelport: error: a video input needs PyAV, the video extra: "
        "pip install 'modelport[video]'\n"
    )
