"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import annostore

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "'label': 'cat'" in printed and printed.rstrip().endswith("[1]")
    assert annostore.open(str(tmp_path / "labels")).dataset("pets").version("gold").number == 1
