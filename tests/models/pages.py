"""A model the page tests upload a picture to: it answers with a picture."""

from __future__ import annotations

from PIL import ImageOps

import modelport
from modelport import Input


class Invert(modelport.Model):
    """Inverts a picture's colours."""

    name = "invert"

    def predict(
        self, image: modelport.Image = Input(mode="RGB", description="Any picture")
    ) -> modelport.Image:
        return ImageOps.invert(image)
