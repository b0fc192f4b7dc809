"""The usage example in README.md runs and does what its comments say."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_usage_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {"print": lambda *args: None}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["net"].evaluate(namespace["X_test"], namespace["y_test"]) >= 0.95
    assert len(namespace["dW"]) == 2 and namespace["dW"][0].shape == (30, 64)
