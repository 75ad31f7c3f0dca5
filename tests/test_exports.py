"""The public namespace is exactly what __all__ says, sorted."""

from __future__ import annotations

import modelport


def test_all_is_sorted_and_exported() -> None:
    assert modelport.__all__ == sorted(modelport.__all__)
    for name in modelport.__all__:
        assert hasattr(modelport, name), name


def test_nothing_public_outside_all() -> None:
    public = {
        name
        for name, value in vars(modelport).items()
        if not name.startswith("_") and not isinstance(value, type(modelport))
    }
    assert public == set(modelport.__all__) - {"__version__"}
