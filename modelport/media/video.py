"""Video: the object a model gets and returns, and its decoding and encoding with PyAV
(the ``video`` extra; its wheels carry FFmpeg)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from modelport.media.codec import Encoded, MediaLimits
    from modelport.spec import FieldSpec

from modelport.media.options import VIDEO_FORMATS

_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ("MP4", "MOV"), "matroska,webm": ("MKV", "WEBM")}
_WRITERS = {  # container, codec, pixel format
    "MP4": ("mp4", "libx264", "yuv420p"),
    "WEBM": ("webm", "libvpx-vp9", "yuv420p"),
    "MKV": ("matroska", "ffv1", "bgr0"),
}


@dataclass
class Video:
    """Frames: uint8 RGB, shape ``(frames, height, width, 3)``, at ``fps`` frames a second."""

    __modelport_media__: ClassVar[str] = "video"

    frames: npt.NDArray[np.uint8]
    fps: float

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self.frames) / self.fps

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Video):
            return NotImplemented
        import numpy as np

        return self.fps == other.fps and bool(np.array_equal(self.frames, other.frames))

    __hash__ = None  # type: ignore[assignment]


def read_video(data: bytes, f: FieldSpec | None, limits: MediaLimits) -> Video:
    """Decode the first video stream to RGB frames, at the field's frame rate and size;
    never more than the duration and frame limits are decoded."""
    import av
    import numpy as np
    from PIL import Image as PILImage

    from modelport.media.codec import MediaError, conform_image

    allowed = (f.format if f is not None else None) or list(VIDEO_FORMATS)
    names = ", ".join(allowed)
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError):
        raise MediaError(f"not a {names} file") from None
    with container:
        kinds = _CONTAINERS.get(container.format.name, (container.format.name.upper(),))
        if not set(kinds) & set(allowed):
            raise MediaError(f"not a {names} file (it is {container.format.long_name})")
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        source_fps = float(stream.average_rate or stream.guessed_rate or 25)
        fps = (f.fps if f is not None and f.fps else None) or source_fps
        most = limits.max_duration
        if f is not None and f.max_duration is not None:
            most = min(most, f.max_duration)
        max_frames = limits.max_frames
        if f is not None and f.max_frames is not None:
            max_frames = min(max_frames, f.max_frames)
        frames: list[Any] = []
        next_time = 0.0
        try:
            for frame in container.decode(stream):
                at = float(frame.time) if frame.time is not None else len(frames) / fps
                if at > most:
                    raise MediaError(f"the video is longer than the limit of {most:g} seconds")
                if at + 1e-6 < next_time:
                    continue  # dropped to reach the field's frame rate
                next_time += 1 / fps
                if len(frames) >= max_frames:
                    raise MediaError(f"the video has more than {max_frames} frames")
                if frame.width * frame.height > limits.max_pixels:
                    raise MediaError(f"frames of {frame.width}x{frame.height} are too large")
                image: PILImage.Image = frame.to_image()  # type: ignore[no-untyped-call]
                if f is not None:
                    image = conform_image(image, f)
                frames.append(np.asarray(image.convert("RGB")))
        except MediaError:
            raise
        except (av.FFmpegError, ValueError) as e:
            raise MediaError(f"the video is damaged or truncated ({e})") from None
    if not frames:
        raise MediaError("the video has no frames")
    duration = len(frames) / fps
    if f is not None and f.min_duration is not None and duration < f.min_duration:
        raise MediaError(f"the video is {duration:.3g} seconds; the minimum is {f.min_duration:g}")
    return Video(np.stack(frames), fps)


def encode_video(video: Any, f: FieldSpec | None, *, queued: bool = False) -> Encoded:
    """A :class:`Video` written as the field says (MP4, H.264, unless told WEBM); queued
    inputs are kept lossless (FFV1 in Matroska)."""
    import av
    import numpy as np

    from modelport.media.codec import Encoded, MediaError

    if not isinstance(video, Video):
        raise MediaError(f"expected a modelport.Video, got {type(video).__name__}")
    fmt = "MKV" if queued else (f.format[0] if f is not None and f.format else "MP4")
    container_name, codec, pix_fmt = _WRITERS[fmt]
    frames = np.asarray(video.frames, dtype=np.uint8)
    height, width = frames.shape[1], frames.shape[2]
    if pix_fmt == "yuv420p" and (width % 2 or height % 2):  # 4:2:0 needs even sides
        frames = frames[:, : height - height % 2, : width - width % 2]
        height, width = frames.shape[1], frames.shape[2]
    buffer = io.BytesIO()
    rate = Fraction(video.fps).limit_denominator(1001)
    with av.open(buffer, mode="w", format=container_name) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Encoded(buffer.getvalue(), VIDEO_FORMATS[fmt])


def decode_video(data: bytes) -> Video:
    from modelport.media.codec import MediaLimits

    return read_video(data, None, MediaLimits(max_duration=float("inf"), max_frames=1 << 30))
