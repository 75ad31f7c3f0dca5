"""Models for the operations tests: a slow setup, a setup that prints, a versioned answer."""

from __future__ import annotations

import logging
import os
import threading

import modelport


class SlowSetup(modelport.Model):
    """A setup() that takes as long as the test wants (until $MODELPORT_TEST_RELEASE exists)."""

    name = "slow-setup"

    def setup(self) -> None:
        release = os.environ.get("MODELPORT_TEST_RELEASE", "")
        while not os.path.exists(release):
            threading.Event().wait(0.05)

    def predict(self, x: int) -> int:
        return x


class Chatty(modelport.Model):
    """Prints during setup the way model libraries do: half a line, a log record from the
    library meanwhile, then the end of the line."""

    name = "chatty"

    def setup(self) -> None:
        print("loading weights", end="", flush=True)
        logging.getLogger("somelibrary").warning("a library's warning while weights load")
        print(" ... done")

    def predict(self, x: int) -> int:
        print(f"predicting {x}")
        return x
