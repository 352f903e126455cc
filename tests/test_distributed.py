"""fastrnn.distributed on a real Dask LocalCluster (two single-threaded worker
processes, started and closed by the tests within bounded time)."""
import os
import signal
import time

import numpy as np
import pytest

import fastrnn
from fastrnn.data import Vocabulary
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

distributed = pytest.importorskip("distributed")
dask_bag = pytest.importorskip("dask.bag")
dask_array = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastrnn.distributed")


@pytest.fixture(scope="module")
def client():
    # (Dask's nanny sets OMP_NUM_THREADS=1 and the like in this process's
    # environment for its workers and leaves them: later tests' subprocesses
    # would inherit them)
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, timeout=60)
    c = distributed.Client(cluster, timeout=60)
    try:
        yield c
    finally:
        c.close(timeout=30)
        cluster.close(timeout=30)
        os.environ.clear()
        os.environ.update(saved)


def _dna(n, seed, low=3, high=20):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ATCG"), rng.integers(low, high))) for _ in range(n)]


def _classifier(hidden=8):
    return SequenceClassifier(vocab=Vocabulary("ATCG"), num_classes=3, hidden_size=hidden,
                              seed=0)


def test_predict_matches_local_in_order_for_lists_and_bags(client):
    model = _classifier()
    X = _dna(1000, 0)
    local = model.predict(X).tolist()
    assert fd.predict(model, X, client=client, batch_size=64) == local
    bag = dask_bag.from_sequence(X, npartitions=7)
    assert fd.predict(model, bag, client=client) == local
    lazy = fd.predict(model, bag, client=client, compute=False)
    assert isinstance(lazy, dask_bag.Bag) and lazy.compute() == local
    lazy = fd.predict(model, X, client=client, batch_size=300, compute=False)
    assert isinstance(lazy, dask_bag.Bag) and lazy.npartitions == 4
    assert client.compute(lazy).result() == local
    # Dask's progress bar while computing (list and bag)
    assert fd.predict(model, X, client=client, batch_size=100, progress=True) == local
    assert fd.predict(model, bag, client=client, progress=True) == local


def test_every_ready_made_model(client):
    vocab = Vocabulary("ATCG")
    X = _dna(60, 1)
    tagger = SequenceTagger(vocab=vocab, num_tags=2, hidden_size=8, seed=0)
    got = fd.predict(tagger, X, client=client, batch_size=16)
    for a, b in zip(got, tagger.predict(X)):
        np.testing.assert_array_equal(a, b)
    s2s = Seq2Seq(10, 10, hidden_size=8, seed=0)
    src = [np.random.default_rng(i).integers(0, 10, 5) for i in range(40)]
    for a, b in zip(fd.predict(s2s, src, client=client, batch_size=16), s2s.predict(src)):
        np.testing.assert_array_equal(a, b)
    lm = LanguageModel(vocab, hidden_size=8, seed=0)
    assert fd.predict(lm, X, client=client, batch_size=16) == [lm.predict(s) for s in X]


def test_layers_on_arrays_and_lists(client):
    rng = np.random.default_rng(2)
    layer = fastrnn.LSTM(4, 6, seed=0)
    x = rng.standard_normal((10, 64, 4)).astype(np.float32)
    y = fd.predict(layer, dask_array.from_array(x, chunks=(5, 16, 4)), client=client)
    np.testing.assert_array_equal(y, layer(x)[0])
    first = fastrnn.GRU(4, 5, batch_first=True, seed=1)
    xb = rng.standard_normal((40, 7, 4)).astype(np.float32)
    lazy = fd.predict(first, dask_array.from_array(xb, chunks=(10, 7, 4)), client=client,
                      compute=False)
    assert isinstance(lazy, dask_array.Array) and lazy.chunks[0] == (10, 10, 10, 10)
    np.testing.assert_array_equal(lazy.compute(), first(xb)[0])
    seqs = [rng.standard_normal((rng.integers(2, 9), 4)).astype(np.float32) for _ in range(30)]
    for a, s in zip(fd.predict(layer, seqs, client=client, batch_size=8), seqs):
        # (one thread per task against this process's two: the batch-1 products
        # split differently, float rounding apart)
        np.testing.assert_allclose(a, layer(s)[0], rtol=1e-5, atol=1e-6)


def test_the_model_travels_once_per_worker(client):
    """After many tasks, each worker process holds the model loaded once (one
    entry per model) and its file bytes from the plugin, not from the tasks."""
    model = _classifier(hidden=5)
    X = _dna(400, 3)
    fd.predict(model, X, client=client, batch_size=10)            # 40 tasks
    fd.predict(model, X, client=client, batch_size=10)            # and again

    def held():
        from fastrnn import distributed as d
        return sorted(d._MODELS), sorted(d._PAYLOADS)
    token = fd._deliver(model, client)
    for models, payloads in client.run(held).values():
        assert models.count(token) == 1 and token in payloads
    # the graph's tasks carry the fingerprint, not the model
    lazy = fd.predict(model, X, client=client, batch_size=10, compute=False)
    graph_bytes = sum(len(str(v)) for v in dict(lazy.__dask_graph__()).values())
    assert graph_bytes < len(fd._model_bytes(model)) * 40


def test_a_bad_sequence_raises_the_local_error_naming_its_index(client):
    model = _classifier()
    X = _dna(300, 4)
    X[211] = "ACXG"
    with pytest.raises(ValueError) as local:
        model.predict(X)
    assert "X[211]" in str(local.value)
    expected = str(local.value).replace("X[211]", "data[211]")
    for data in (X, dask_bag.from_sequence(X, npartitions=5)):
        with pytest.raises(ValueError) as remote:
            fd.predict(model, data, client=client, batch_size=50)
        assert str(remote.value) == expected
    X[211] = ""
    with pytest.raises(ValueError, match=r"data\[211\] is empty"):
        fd.predict(model, X, client=client, batch_size=50)


def test_a_killed_worker_loses_no_result(client):
    """One worker process killed mid-job: Dask reruns its tasks (the restarted
    worker gets the model again from the plugin); every result arrives, in
    order."""
    model = SequenceClassifier(vocab=Vocabulary("ATCG"), num_classes=2, hidden_size=32,
                               seed=0)
    X = _dna(3000, 5, 40, 80)
    local = model.predict(X).tolist()
    lazy = fd.predict(model, X, client=client, batch_size=50, compute=False)   # 60 tasks
    future = client.compute(lazy)
    pids = client.run(os.getpid)
    deadline = time.time() + 60
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert future.status == "pending"         # (mid-job: the kill is what is tested)
    killed = next(iter(pids.values()))
    os.kill(killed, signal.SIGKILL)
    assert future.result(timeout=180) == local
    client.wait_for_workers(2, timeout=60)      # the nanny restarted it
    assert killed not in client.run(os.getpid).values()
    # and the restarted worker has the model again (the plugin): a new job runs
    assert fd.predict(model, X[:200], client=client, batch_size=20) == local[:200]


def test_without_a_client_runs_on_the_local_scheduler():
    """No client in the process (a fresh one: this module's cluster would be
    the current client here): Dask's local threads, the same results, a
    progress bar on request, and the lazy bag."""
    from isolated import run_isolated
    out = run_isolated("""
        import fastrnn.distributed as fd
        from distributed import get_client
        from fastrnn.data import Vocabulary
        from fastrnn.models import SequenceClassifier
        try:
            get_client()
            raise SystemExit("a client exists")
        except ValueError:
            pass
        model = SequenceClassifier(vocab=Vocabulary("ATCG"), num_classes=3, hidden_size=8,
                                   seed=0)
        rng = np.random.default_rng(6)
        X = ["".join(rng.choice(list("ATCG"), rng.integers(3, 20))) for _ in range(200)]
        want = model.predict(X).tolist()
        assert fd.predict(model, X, batch_size=30) == want
        assert fd.predict(model, X, batch_size=30, progress=True) == want
        assert fd.predict(model, X, batch_size=30, compute=False).compute(
            scheduler="threads") == want
        X[77] = "AAXA"
        try:
            fd.predict(model, X, batch_size=30)
        except ValueError as exc:
            print("error:", exc)
    """, timeout=120)
    assert ("error: data[77]: symbol 'X' is not in the vocabulary (and it has no unknown "
            "token)") in out.stdout


def test_refusals():
    model = _classifier()
    with pytest.raises(TypeError, match="model must be a fastrnn module"):
        fd.predict(object(), ["A"])
    with pytest.raises(ValueError, match="batch_size"):
        fd.predict(model, ["A"], batch_size=0)
    with pytest.raises(TypeError, match="data must be a list"):
        fd.predict(model, "ACGT")
    with pytest.raises(ValueError, match="at least one sequence"):
        fd.predict(model, [])
    with pytest.raises(TypeError, match="a dask.array is for modules"):
        fd.predict(model, dask_array.zeros((3, 2, 4)))
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        fd.predict(model, ["ACGT"], client="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        model.fit(["ACGT"], [1], epochs=1, verbose=False, client=object())


def _cli(*args, stdin=None, timeout=120):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], capture_output=True,
                          text=True, input=stdin, timeout=timeout)


def test_predict_command_in_process_and_on_the_cluster(client, tmp_path):
    """`python -m fastrnn predict MODEL INPUT [--scheduler ADDRESS]`: one result
    per line, in order, the same with and without the cluster; a bad line is
    named by its number."""
    vocab = Vocabulary("ATCG")
    X = _dna(300, 7)
    (tmp_path / "in.txt").write_text("\n".join(X) + "\n")
    clf = _classifier()
    clf.save(tmp_path / "clf.npz")
    want = "".join(f"{c}\n" for c in clf.predict(X))
    here = _cli("predict", str(tmp_path / "clf.npz"), str(tmp_path / "in.txt"))
    assert here.returncode == 0, here.stderr
    assert here.stdout == want
    address = client.scheduler.address
    there = _cli("predict", str(tmp_path / "clf.npz"), str(tmp_path / "in.txt"),
                 "--scheduler", address, "--batch-size", "64")
    assert there.returncode == 0, there.stderr
    assert there.stdout == want
    tagger = SequenceTagger(vocab=vocab, num_tags=3, hidden_size=8, seed=0)
    tagger.save(tmp_path / "tagger.npz")
    out = _cli("predict", str(tmp_path / "tagger.npz"), "-", "--scheduler", address,
               stdin="ACGT\nGG\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [" ".join(map(str, t))
                                       for t in tagger.predict(["ACGT", "GG"])]
    lm = LanguageModel(vocab, hidden_size=8, seed=0)
    lm.save(tmp_path / "lm.npz")
    out = _cli("predict", str(tmp_path / "lm.npz"), "-", stdin="ACG\nTT\n")
    assert out.stdout.splitlines() == [lm.predict("ACG"), lm.predict("TT")]
    for extra in ((), ("--scheduler", address)):
        bad = _cli("predict", str(tmp_path / "lm.npz"), "-", *extra, stdin="ACG\nTXT\n")
        assert bad.returncode == 1 and "fastrnn: error: line 2: " in bad.stderr, bad.stderr
    X[120] = "AXC"
    (tmp_path / "bad.txt").write_text("\n".join(X) + "\n")
    for extra in ((), ("--scheduler", address)):
        bad = _cli("predict", str(tmp_path / "clf.npz"), str(tmp_path / "bad.txt"), *extra)
        assert bad.returncode == 1
        assert bad.stderr.strip().splitlines()[-1] == (
            "fastrnn: error: line 121: symbol 'X' is not in the vocabulary (and it has no "
            "unknown token)")


def test_predict_command_refusals(tmp_path):
    (tmp_path / "in.txt").write_text("ACGT\n")
    missing = _cli("predict", str(tmp_path / "none.npz"), str(tmp_path / "in.txt"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    fastrnn.LSTM(2, 3).save(tmp_path / "layer.npz")
    layer = _cli("predict", str(tmp_path / "layer.npz"), str(tmp_path / "in.txt"))
    assert layer.returncode == 1 and "predict takes a SequenceClassifier" in layer.stderr
    _classifier().save(tmp_path / "clf.npz")
    (tmp_path / "empty.txt").write_text("")
    empty = _cli("predict", str(tmp_path / "clf.npz"), str(tmp_path / "empty.txt"))
    assert empty.returncode == 1 and "holds no lines" in empty.stderr
    gone = _cli("predict", str(tmp_path / "clf.npz"), str(tmp_path / "in.txt"), "--scheduler",
                "tcp://127.0.0.1:9", "--timeout", "2", timeout=60)
    assert gone.returncode == 1 and "fastrnn: error:" in gone.stderr


def _max_weight_gap(a, b):
    wa, wb = a.state_dict(), b.state_dict()
    return max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)


def test_data_parallel_fit_gives_the_single_process_weights(client):
    """fit(..., client=client): each batch's gradient summed from shards on the
    two workers; the same seed gives the weights and losses of the
    single-process fit, to float rounding, for every ready-made model."""
    from fastrnn import datasets
    vocab = Vocabulary("ATCG")
    X = _dna(300, 8, 5, 30)
    cases = [
        (lambda: SequenceClassifier(vocab=vocab, num_classes=2, hidden_size=12, seed=0),
         (X, [int("GC" in s) for s in X])),
        (lambda: SequenceTagger(vocab=vocab, num_tags=2, hidden_size=12, num_layers=2,
                                bidirectional=True, seed=0),
         (X, [np.array([int(ch in "CG") for ch in s]) for s in X])),
        (lambda: Seq2Seq(10, 10, hidden_size=12, seed=0), datasets.reversal(200, seed=0)),
    ]
    for make, data in cases:
        alone, spread = make(), make()
        h_alone = alone.fit(*data, epochs=2, batch_size=40, verbose=False, seed=3)
        h_spread = spread.fit(*data, epochs=2, batch_size=40, verbose=False, seed=3,
                              client=client)
        assert _max_weight_gap(alone, spread) < 1e-4, type(alone).__name__
        np.testing.assert_allclose(h_spread["loss"], h_alone["loss"], rtol=1e-5)
        assert _max_weight_gap(alone, make()) > 1e-2          # (and training moved them)
    text = "the quick brown fox jumps over the lazy dog. " * 20
    lm_vocab = Vocabulary.from_text(text)
    alone = LanguageModel(lm_vocab, hidden_size=12, seed=0)
    spread = LanguageModel(lm_vocab, hidden_size=12, seed=0)
    alone.fit(text, seq_len=16, epochs=2, verbose=False, seed=1)
    spread.fit(text, seq_len=16, epochs=2, verbose=False, seed=1, client=client)
    assert _max_weight_gap(alone, spread) < 1e-4


def test_data_parallel_fit_refusals(client):
    model = _classifier()
    q = fastrnn.quantize(model, "int8")
    with pytest.raises(ValueError, match="inference"):
        q.fit(["ACGT"], [1], epochs=1, verbose=False, client=client)
