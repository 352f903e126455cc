"""fastrnn.data: vocabularies, one-hot rows, padding and mini-batches."""
import numpy as np
import pytest

from fastrnn.data import Vocabulary, batches, pad_sequences


def test_equations_example():
    """docs/EQUATIONS.md: "AACG" over "ATCG" is e_A, e_A, e_C, e_G."""
    vocab = Vocabulary("ATCG")
    assert len(vocab) == 4 and vocab.symbols == ("A", "T", "C", "G")
    np.testing.assert_array_equal(vocab.encode("AACG"), [0, 0, 2, 3])
    assert vocab.decode([0, 0, 2, 3]) == "AACG"
    rows = vocab.one_hot("AACG")
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, np.eye(4, dtype=np.float32)[[0, 0, 2, 3]])
    np.testing.assert_array_equal(vocab.one_hot(np.array([0, 0, 2, 3])), rows)
    assert vocab[2] == "C" and vocab.index("G") == 3 and "T" in vocab and "U" not in vocab


def test_unknown_symbols():
    vocab = Vocabulary("ab")
    with pytest.raises(ValueError, match="symbol 'z' is not in the vocabulary"):
        vocab.encode("abz")
    with_unk = Vocabulary("ab", unknown="?")
    assert len(with_unk) == 3
    np.testing.assert_array_equal(with_unk.encode("azb"), [0, 2, 1])
    assert with_unk.decode(with_unk.encode("azb")) == "a?b"


def test_word_vocabulary_and_corpus():
    words = "the cat saw the dog and the cat ran".split()
    vocab = Vocabulary.from_text(words, unknown="<unk>")
    assert vocab.symbols[:3] == ("the", "cat", "saw")   # by count, then first seen
    assert vocab.symbols[-1] == "<unk>"
    assert vocab.decode(vocab.encode(["the", "dog", "emu"]), sep=" ") == "the dog <unk>"
    assert vocab.decode([0, 1], sep=None) == ["the", "cat"]
    small = Vocabulary.from_text(words, min_count=2)
    assert small.symbols == ("the", "cat")
    capped = Vocabulary.from_text("abracadabra", unknown="_", max_size=3)
    assert capped.symbols == ("a", "b", "_")


def test_vocabulary_checks():
    with pytest.raises(ValueError, match="'a' appears twice"):
        Vocabulary("aba")
    with pytest.raises(ValueError, match="at least one symbol"):
        Vocabulary("")
    with pytest.raises(TypeError, match="symbols must be hashable"):
        Vocabulary([["a"], ["b"]])
    with pytest.raises(TypeError, match="symbols must be a string or an iterable"):
        Vocabulary(5)
    vocab = Vocabulary("ab")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2\)"):
        vocab.decode([0, 2])
    with pytest.raises(TypeError, match="ids must hold integer ids"):
        vocab.decode([0.0])
    with pytest.raises(ValueError, match=r"token id must be in \[0, 2\)"):
        vocab[5]
    with pytest.raises(TypeError, match="dtype must be"):
        vocab.one_hot("ab", dtype=np.int32)


def test_pad_sequences():
    ids, lengths = pad_sequences([np.array([1, 2, 3]), np.array([4]), [5, 6]], pad=9)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [4, 9, 9], [5, 6, 9]])
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    feats, lengths = pad_sequences([np.ones((2, 3)), np.ones((4, 3))])
    assert feats.shape == (2, 4, 3) and np.all(feats[0, 2:] == 0)
    np.testing.assert_array_equal(lengths, [2, 4])
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequences\[1\] is empty"):
        pad_sequences([[1], []])
    with pytest.raises(ValueError, match=r"sequences\[1\] has shape \(2, 4\), unlike"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(TypeError, match=r"sequences\[0\] must hold numbers"):
        pad_sequences([["a", "b"]])


def test_batches_cover_everything_once_and_shuffle_reproducibly():
    seqs = [np.arange(1, n + 1) for n in (3, 1, 4, 2, 5)]
    labels = np.array([0, 1, 0, 1, 1])
    seen = []
    for x, lengths, y in batches(seqs, labels, batch_size=2, seed=3):
        assert x.shape[0] == len(lengths) == len(y) <= 2
        for row, n, label in zip(x, lengths, y):
            seen.append((n, label))
            np.testing.assert_array_equal(row[:n], np.arange(1, n + 1))
    assert sorted(seen) == sorted(zip((3, 1, 4, 2, 5), labels))
    first = [y.tolist() for _, _, y in batches(seqs, labels, batch_size=2, seed=3)]
    again = [y.tolist() for _, _, y in batches(seqs, labels, batch_size=2, seed=3)]
    assert first == again
    ordered = [lengths.tolist() for _, lengths, _ in batches(seqs, batch_size=2, shuffle=False)]
    assert ordered == [[3, 1], [4, 2], [5]]


def test_batches_pad_per_step_targets():
    seqs = [np.array([1, 2, 3]), np.array([4])]
    tags = [np.array([0, 1, 0]), np.array([1])]
    (x, lengths, y), = list(batches(seqs, tags, batch_size=4, shuffle=False, pad=0))
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"targets must have one entry per sequence \(2\)"):
        next(batches(seqs, [0], batch_size=1))
