"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import annostore

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    first, converting = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(first, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "'label': 'cat'" in printed and printed.rstrip().endswith("[1]")
    exec(compile(converting, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.strip() == "Counter() Counter()"  # a box converts to COCO and YOLO OBB whole
    assert (tmp_path / "pets-yolo" / "data.yaml").exists()
    assert annostore.open(str(tmp_path / "labels")).dataset("pets").version("gold").number == 1
