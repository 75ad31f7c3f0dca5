"""The audio object a model gets and may return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass
class Audio:
    """Audio samples: float32 in [-1, 1], shape ``(frames,)`` for mono or
    ``(frames, channels)``, at ``sample_rate`` frames per second."""

    __modelport_media__: ClassVar[str] = "audio"

    samples: npt.NDArray[np.float32]
    sample_rate: int

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Audio):
            return NotImplemented
        import numpy as np

        return self.sample_rate == other.sample_rate and bool(
            np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]
