"""Audio: measures a recording (loudness, pitch, duration) and synthesises tone sequences;
no weights, no download.

    curl --data-binary @voice.wav -H 'content-type: audio/wav' \
        localhost:8000/endpoints/loudness/jobs
    curl -H 'Accept: audio/wav' localhost:8000/endpoints/tones/jobs \
        -d '{"input": {"notes": ["A4", "C5", "E5"]}}' > tones.wav
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

import modelport
from modelport import Input, Media

RATE = 16000
_NOTES = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}


class Loudness(modelport.Model):
    """Loudness (RMS and peak, in dBFS), the main pitch and the duration of a recording."""

    def predict(
        self,
        audio: modelport.Audio = Input(
            description="A WAV, FLAC, OGG or MP3 recording",
            sample_rate=RATE,
            channels=1,
            max_duration=30,
        ),
    ) -> dict[str, Any]:
        samples = audio.samples.astype(np.float64)
        rms = float(np.sqrt(np.mean(samples**2)))
        peak = float(np.max(np.abs(samples)))
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        freqs = np.fft.rfftfreq(len(samples), 1 / audio.sample_rate)
        audible = freqs >= 50
        pitch = float(freqs[audible][np.argmax(spectrum[audible])]) if audible.any() else 0.0
        return {
            "duration": round(audio.duration, 3),
            "rms_dbfs": round(_dbfs(rms), 2),
            "peak_dbfs": round(_dbfs(peak), 2),
            "pitch_hz": round(pitch, 1),
        }


class Tones(modelport.Model):
    """A sequence of notes (``A4``, ``C#5``) as sine tones with soft edges."""

    def predict(
        self,
        notes: list[str] = Input(
            ["A4", "C5", "E5"], min_length=1, max_length=64, example=["C4", "E4", "G4"]
        ),
        note_seconds: float = Input(0.4, ge=0.05, le=5),
        volume: float = Input(0.5, ge=0, le=1),
    ) -> Annotated[modelport.Audio, Media(format="WAV")]:
        n = int(RATE * note_seconds)
        t = np.arange(n, dtype=np.float32) / RATE
        edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01).astype(np.float32)
        parts = [volume * edge * np.sin(2 * np.pi * _hz(note) * t) for note in notes]
        return modelport.Audio(np.concatenate(parts).astype(np.float32), RATE)


def _hz(note: str) -> float:
    """``A4`` is 440 Hz; ``C#5``, ``Eb3``."""
    name, rest = note[:1].upper(), note[1:]
    if name not in _NOTES or not rest:
        raise ValueError(f"not a note: {note!r} (use a letter, an optional # or b, an octave)")
    shift = _NOTES[name]
    if rest[0] in "#b":
        shift += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    if not rest.lstrip("-").isdigit():
        raise ValueError(f"not a note: {note!r}")
    return float(440.0 * 2 ** ((shift + 12 * (int(rest) - 4)) / 12))


def _dbfs(value: float) -> float:
    return 20 * float(np.log10(max(value, 1e-10)))
