"""``python -m fastrnn``: every command end to end in a subprocess, and its error paths."""
import subprocess
import sys

import pytest

import fastrnn


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastrnn", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_user_error(result, code, text):
    """Non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0] and text in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["", "demo", "train", "generate", "quantize", "bench",
                                     "info"])
def test_help(command):
    result = run(*filter(None, [command]), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m fastrnn")


def test_no_command_prints_the_commands():
    result = run()
    assert result.returncode == 2
    assert all(c in result.stderr for c in ("demo", "train", "generate", "bench", "info"))


def test_demo_trains_and_saves(tmp_path):
    result = run("demo", "--quiet", "--save", tmp_path / "motif.npz")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    accuracy = float(out.split("Test accuracy: ")[1].split()[0])
    assert accuracy >= 0.95
    assert "Training time:" in out and "strings/s" in out
    model = fastrnn.load(tmp_path / "motif.npz")
    assert type(model).__name__ == "SequenceClassifier" and model.vocab.symbols == tuple("ATCG")


def test_train_then_generate(tmp_path):
    text = "".join(["the cat sat on the mat.\n", "a dog ran in the park.\n"] * 40)
    (tmp_path / "text.txt").write_text(text)
    result = run("train", "text.txt", "-o", "lm.npz", "--epochs", 2, "--hidden-size", 16,
                 "--seq-len", 20, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Saved to lm.npz" in result.stdout
    lm = fastrnn.load(tmp_path / "lm.npz")
    assert set(lm.vocab.symbols) == set(text)
    first = run("generate", "lm.npz", "--prefix", "the ", "--length", 30, "--seed", 4,
                cwd=tmp_path)
    again = run("generate", "lm.npz", "--prefix", "the ", "--length", 30, "--seed", 4,
                cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout.startswith("the ") and len(first.stdout.rstrip("\n")) >= 34 - 1
    assert set(first.stdout) <= set(text) | {"\n"}
    # quantize the file, and generate from it (and with --weights) as the API does
    result = run("quantize", "lm.npz", "lm16.npz", "--weights", "float16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "with float16 weights to lm16.npz" in result.stdout
    q = fastrnn.load(tmp_path / "lm16.npz")
    assert q._inference_only == "float16"
    want = fastrnn.quantize(lm, "int8").generate("the ", 30, temperature=0.8, seed=4)
    got = run("generate", "lm.npz", "--prefix", "the ", "--length", 30, "--seed", 4,
              "--weights", "int8", cwd=tmp_path)
    assert got.returncode == 0 and got.stdout == "the " + want + "\n"
    from_file = run("generate", "lm16.npz", "--prefix", "the ", "--length", 30, "--seed", 4,
                    cwd=tmp_path)
    want16 = fastrnn.quantize(lm, "float16").generate("the ", 30, temperature=0.8, seed=4)
    assert from_file.stdout == "the " + want16 + "\n"
    assert_user_error(run("quantize", "lm16.npz", "x.npz", cwd=tmp_path), 1, "already quantized")
    # float32: packed once, the float model's text
    result = run("quantize", "lm.npz", "lm32.npz", "--weights", "float32", cwd=tmp_path)
    assert result.returncode == 0 and "with float32 weights" in result.stdout, result.stderr
    assert fastrnn.load(tmp_path / "lm32.npz")._inference_only == "float32"
    packed = run("generate", "lm32.npz", "--prefix", "the ", "--length", 30, "--seed", 4,
                 cwd=tmp_path)
    assert packed.returncode == 0 and packed.stdout == first.stdout


def test_info():
    result = run("info")
    assert result.returncode == 0
    assert "openmp:" in result.stdout and "kernels:" in result.stdout


def test_bench_runs_one_configuration():
    result = run("bench", "--only", "lstmcell-h512-b1", "--rounds", 1)
    assert result.returncode == 0, result.stderr
    assert "lstmcell-h512-b1" in result.stdout and "ratio" in result.stdout
    assert "floor = the larger of FLOPs" in result.stdout or "floor: no FMA peak" in result.stdout


def test_user_errors(tmp_path):
    assert_user_error(run("train", tmp_path / "missing.txt"), 1, "no such file")
    assert_user_error(run("generate", tmp_path / "missing.npz"), 1, "no such file")
    assert_user_error(run("train", "x.txt", "--epochs", 0), 2, "--epochs")
    assert_user_error(run("demo", "--cell", "transformer"), 2, "--cell")
    assert_user_error(run("demo", "--motif", "XYZ", "--samples", 10), 1, "motif")
    assert_user_error(run("bogus"), 2, "bogus")
    assert_user_error(run("bench", "--only", "nothing"), 2, "nothing")
    (tmp_path / "short.txt").write_text("abc")
    assert_user_error(run("train", tmp_path / "short.txt"), 1, "needs at least")
    (tmp_path / "notes.txt").write_text("hello")
    assert_user_error(run("generate", tmp_path / "notes.txt"), 1, "not a fastrnn model file")
    fastrnn.GRU(2, 3).save(tmp_path / "gru.npz")
    assert_user_error(run("generate", tmp_path / "gru.npz"), 1, "not a LanguageModel")
    lm = fastrnn.models.LanguageModel("ab", hidden_size=4, seed=0)
    lm.save(tmp_path / "lm.npz")
    assert_user_error(run("generate", tmp_path / "lm.npz", "--prefix", "abc"), 1, "'c'")
    assert_user_error(run("generate", tmp_path / "lm.npz", "--temperature", -1), 1,
                      "temperature")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x01" * 50)
    assert_user_error(run("train", tmp_path / "binary.txt"), 1, "not UTF-8")
