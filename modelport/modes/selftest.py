"""``modelport test TARGET``: set the model up, run it on inputs made from its spec, check
every output against the declared outputs, and exit 1 if anything failed.

The inputs: the defaults, then each input in turn at both of its bounds, as each of its
choices, at its shortest and longest length, true and false, null when nullable; strings
are made to match their pattern (or use the input's ``example``). Each case runs
``--count`` times, so a model that only fails the second time is caught too.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ModelportError
from modelport.media.options import MEDIA_TYPES
from modelport.modes import console
from modelport.modes.local import LocalModel, load_target
from modelport.modes.run import common_options, target_and_rest
from modelport.spec import EndpointSpec, FieldSpec, media_field

_UNSET: Any = object()


class CannotSynthesize(ModelportError):
    """No valid value could be made for an input from its spec."""


@dataclass
class Case:
    name: str
    input: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": shown(self.input),
            "ok": self.ok,
            "errors": self.errors,
            "seconds": [round(s, 6) for s in self.seconds],
        }


def _string(f: FieldSpec, length: int | None = None) -> str | Any:
    lengths = [length] if length is not None else [f.min_length or 1, 1, 3, 8]
    if f.pattern is None:
        n = lengths[0]
        return "a" * n
    example = f.example
    if (
        isinstance(example, str)
        and re.search(f.pattern, example)
        and length in (None, len(example))
    ):
        return example
    for n in lengths:
        if f.min_length is not None and n < f.min_length:
            continue
        if f.max_length is not None and n > f.max_length:
            continue
        for alphabet in ("a", "A", "0", "a0", "-", " ", "a.", "x@y.z"):
            text = (alphabet * n)[:n]
            if re.search(f.pattern, text):
                return text
    return _UNSET


def sample(f: FieldSpec) -> Any:
    """One valid value for ``f`` (its example, default, or one made from its type; a file
    made for it for media)."""
    if f.type in MEDIA_TYPES:
        return media_sample(f)
    if f.example is not None:
        return f.example
    if not f.required and f.default is not None:
        return f.default
    if f.choices:
        return f.choices[0]
    if f.type == "string":
        return _string(f)
    if f.type in ("integer", "float"):
        low = f.ge if f.ge is not None else (f.le - 1 if f.le is not None and f.le < 0 else 0)
        return int(low) if f.type == "integer" else float(low)
    if f.type == "boolean":
        return False
    if f.type == "list":
        item = sample(f.items) if f.items is not None else 0
        return [item] * max(f.min_length or 0, 1 if item is not _UNSET else 0)
    if f.type == "object":
        if f.properties is not None:
            return {k: sample(v) for k, v in f.properties.items() if v.required}
        return {}
    if f.type == "union" and f.variants:
        return sample(f.variants[0])
    return "sample"  # any JSON value


class Synthesized(bytes):
    """A synthesized file: its bytes, and what it is for the report."""

    label: str

    def __new__(cls, data: bytes, label: str) -> Synthesized:
        out = super().__new__(cls, data)
        out.label = label
        return out


def shown(value: Any) -> Any:
    """``value`` as the report shows it: synthesized files by their description."""
    if isinstance(value, Synthesized):
        return f"<{value.label}, {len(value)} bytes>"
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    return value


def _within(want: float, low: float | None, high: float | None) -> float:
    return min(max(want, low if low is not None else want), high if high is not None else want)


def _writable(f: FieldSpec, formats: Sequence[str]) -> str:
    """The first format the field accepts that modelport can write."""
    for fmt in f.format or formats:
        if fmt in formats:
            return fmt
    raise CannotSynthesize(
        f"cannot make a test file: it takes {' or '.join(f.format or ())} only, and modelport"
        f" writes {', '.join(formats)}"
    )


def media_sample(f: FieldSpec) -> Synthesized:
    """A small file the field accepts as it is (no resizing needed): a solid grey image, a
    440 Hz tone, a grey clip, or a few bytes, written in a format the field allows."""
    if f.type == "bytes":
        return Synthesized(b"modelport test\n"[: f.max_bytes or None], "bytes")
    if f.type == "image":
        return _grey_image(f)
    if f.type == "audio":
        return _tone(f)
    return _clip(f)


def _size(f: FieldSpec, want: tuple[int, int]) -> tuple[int, int]:
    if f.size is not None:
        return f.size[0], f.size[1]
    low: Sequence[int | None] = f.min_size or (None, None)
    high: Sequence[int | None] = f.max_size or (None, None)
    return int(_within(want[0], low[0], high[0])), int(_within(want[1], low[1], high[1]))


def _grey_image(f: FieldSpec) -> Synthesized:
    from PIL import Image as PILImage

    from modelport.media.codec import encode_image
    from modelport.media.options import IMAGE_WRITE_FORMATS

    width, height = _size(f, (64, 64))
    mode = f.mode or "RGB"
    image = PILImage.new("RGB", (width, height), (128, 128, 128)).convert(mode)
    fmt = _writable(f, IMAGE_WRITE_FORMATS)
    data = encode_image(image, FieldSpec(type="image", format=[fmt], quality=95)).data
    return Synthesized(data, f"grey {width}x{height} {mode} {fmt} image")


def _seconds(f: FieldSpec) -> float:
    return _within(0.5, f.min_duration, f.max_duration)


def _tone(f: FieldSpec) -> Synthesized:
    import numpy as np

    from modelport.media.audio import Audio
    from modelport.media.codec import encode_audio
    from modelport.media.options import AUDIO_WRITE_FORMATS

    rate, channels, seconds = f.sample_rate or 16000, f.channels or 1, _seconds(f)
    t = np.arange(int(np.ceil(rate * seconds)), dtype=np.float32) / rate
    samples = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    if channels > 1:
        samples = np.repeat(samples[:, None], channels, axis=1)
    fmt = _writable(f, AUDIO_WRITE_FORMATS)
    data = encode_audio(Audio(samples, rate), FieldSpec(type="audio", format=[fmt])).data
    return Synthesized(data, f"{seconds:g} s 440 Hz tone, {rate} Hz x{channels} {fmt}")


def _clip(f: FieldSpec) -> Synthesized:
    try:
        import av  # noqa: F401
    except ImportError:
        raise CannotSynthesize(
            "a video input needs PyAV, the video extra: pip install 'modelport[video]'"
        ) from None
    import numpy as np

    from modelport.media.video import Video, encode_video

    fmt = _writable(f, ("MKV", "MP4", "MOV", "WEBM"))
    fps, seconds = f.fps or 10.0, _seconds(f)
    count = max(1, int(fps * seconds))
    if f.max_frames is not None:
        count = min(count, f.max_frames)
    width, height = _size(f, (64, 48))
    frames = np.full((count, height, width, 3), 128, dtype=np.uint8)
    queued = fmt == "MKV"  # lossless FFV1 in Matroska, what a converted input is
    written = FieldSpec(type="video", format=["MP4" if fmt == "MOV" else fmt])
    data = encode_video(Video(frames, fps), written, queued=queued).data
    return Synthesized(data, f"grey {width}x{height} clip, {count} frames at {fps:g} fps, {fmt}")


def variants(f: FieldSpec) -> Iterator[tuple[str, Any]]:
    """The edge values of one input, each named."""
    if f.type in ("integer", "float"):
        for label, bound in (("ge", f.ge), ("le", f.le)):
            if bound is not None:
                yield label, int(bound) if f.type == "integer" else float(bound)
    if f.choices:
        for choice in f.choices:
            yield "choice", choice
    if f.type == "boolean":
        yield "true", True
        yield "false", False
    if f.type == "string" and not f.choices:
        for label, n in (("min_length", f.min_length), ("max_length", f.max_length)):
            if n is not None:
                yield label, _string(f, n)
    if f.type == "list" and f.items is not None:
        for label, n in (("min_length", f.min_length), ("max_length", f.max_length)):
            if n is not None:
                yield label, [sample(f.items)] * n
    if media_field(f) is not None and not f.required:
        yield "file", sample(f) if f.type != "list" else [sample(f.items)]  # type: ignore[arg-type]
    if f.nullable:
        yield "null", None


_NOTED = ("ge", "le", "min_length", "max_length")


def _named(name: str, make: Callable[[FieldSpec], Any], f: FieldSpec) -> Any:
    try:
        return make(f)
    except CannotSynthesize as e:
        raise CannotSynthesize(f"{name}: {e.message}") from None


def cases(spec: EndpointSpec) -> list[Case]:
    base = {}
    for name, f in spec.inputs.items():
        if not f.required:
            continue
        value = _named(name, sample, f)
        if value is _UNSET:
            raise CannotSynthesize(
                f"cannot make a value for {name!r} matching {f.pattern}: give it an example"
            )
        base[name] = value
    out = [Case("defaults", base)]
    for name, f in spec.inputs.items():
        for label, value in _named(name, lambda f: list(variants(f)), f):
            if value is _UNSET:
                continue
            text = console.dumps(shown(value)).decode()
            text = text if len(text) <= 40 else text[:37] + "..."
            note = f" ({label})" if label in _NOTED else ""
            out.append(Case(f"{name}={text}{note}", {**base, name: value}))
    return out


def main(argv: Sequence[str]) -> int:
    """Run a model on inputs made from its spec; exit 1 if any fails."""
    target, endpoint, _ = target_and_rest("modelport test", argv, __doc__)
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"modelport test {target}",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(parser, progress=False)
    parser.add_argument(
        "--count", type=int, default=2, metavar="N", help="runs of each case (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON, for CI")
    args = parser.parse_args(list(argv[1:]))
    if args.count < 1:
        parser.error("--count must be at least 1")
    console.debug_logging(args.debug)
    try:
        local = LocalModel(load_target(target, endpoint))
        todo = cases(local.spec)
    except ModelportError as e:
        console.error(e.message)
        return 2
    report: dict[str, Any] = {"endpoint": local.spec.name, "target": target}
    started = time.perf_counter()
    try:
        local.setup()
    except Exception as e:
        report.update(setup_error=console.describe(e), passed=False, cases=[])
        _print(report, args.json, [])
        if args.debug:
            console.print_exception(e, True)
        return 1
    report["setup_seconds"] = round(time.perf_counter() - started, 6)
    for case in todo:
        try:
            inputs = local.validate(case.input)
        except ModelportError as e:  # the spec's own example or default is not valid
            case.errors.append(f"the synthesized input is refused: {e.message}")
            continue
        for _ in range(args.count):
            began = time.perf_counter()
            (outcome,) = local.call([inputs])
            case.seconds.append(time.perf_counter() - began)
            if outcome.error is not None and outcome.error not in case.errors:
                case.errors.append(outcome.error)
    report["passed"] = all(c.ok for c in todo)
    report["cases"] = [c.to_dict() for c in todo]
    _print(report, args.json, todo)
    return 0 if report["passed"] else 1


def _print(report: dict[str, Any], as_json: bool, todo: list[Case]) -> None:
    if as_json:
        sys.stdout.write(console.dumps(report, pretty=sys.stdout.isatty()).decode() + "\n")
        return
    print(f"{report['endpoint']} ({report['target']})")
    if "setup_error" in report:
        print(f"FAIL setup: {report['setup_error']}")
        return
    print(f"setup  {report['setup_seconds'] * 1000:.1f} ms")
    width = max(len(c.name) for c in todo)
    for c in todo:
        median = statistics.median(c.seconds) * 1000 if c.seconds else 0.0
        status = "ok  " if c.ok else "FAIL"
        print(
            f"{status} {c.name:<{width}}  {median:8.2f} ms"
            + ("" if c.ok else f"  {'; '.join(c.errors)}")
        )
    failed = sum(not c.ok for c in todo)
    all_times = [s for c in todo for s in c.seconds]
    summary = f"{len(todo)} cases, {failed} failed"
    if all_times:
        median, worst = statistics.median(all_times) * 1000, max(all_times) * 1000
        summary += f"; per run: median {median:.2f} ms, max {worst:.2f} ms"
    print(summary)
