"""The README's model guide runs as written, and prints what its comments say."""
import contextlib
import io
import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def guide_blocks():
    text = README.read_text()
    start = text.index("## Ready-made models")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_guide_has_one_example_per_model():
    blocks = guide_blocks()
    for name in ("SequenceClassifier", "SequenceTagger", "Seq2Seq", "LanguageModel"):
        assert sum(f"{name}(" in b for b in blocks) == 1, name


@pytest.mark.parametrize("index", range(4))
def test_guide_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # the examples write model files
    code = guide_blocks()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README example {index}", "exec"), {})
    printed = out.getvalue()
    # every "print(...)  # value" comment whose value is exact must be what was printed
    for line in code.splitlines():
        match = re.match(r"print\(.*\)\s+# (\[.*\]|\"\w\"|1\.0)$", line.strip())
        if match and not re.search("[A-Z]", match.group(1)):    # not a placeholder
            expected = match.group(1).strip('"')
            assert expected in printed, (line, printed)


def interop_blocks():
    text = README.read_text()
    start = text.index("## Models from and to other frameworks")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


@pytest.mark.parametrize("index", range(4))
def test_interop_example_runs(index, tmp_path, monkeypatch):
    """Each route's example runs, and prints exactly what its comments say."""
    code = interop_blocks()[index]
    os.environ.setdefault("KERAS_BACKEND", "torch")      # as the Keras example says
    for module in re.findall(r"^import (\w+)$", code, re.M):
        if module not in ("numpy", "fastrnn", "os"):
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README interop example {index}", "exec"), {})
    expected = [line.split("# ", 1)[1].strip() for line in code.splitlines()
                if line.startswith("print(")]
    assert out.getvalue().splitlines() == expected
