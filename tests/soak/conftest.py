"""The soak runs only when asked for by its marker (`make test-soak`: `pytest tests/soak -m soak`):
a bare `pytest`, which collects every folder under tests/, must not start five minutes of load."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    if config.option.markexpr:  # -m given: pytest's own marker selection decides
        return
    skip = pytest.mark.skip(reason="the soak runs with -m soak (make test-soak)")
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)
