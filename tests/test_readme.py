"""The README's model guide runs as written, and prints what its comments say."""
import contextlib
import io
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
