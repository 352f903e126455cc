"""Dense, Embedding, losses, optimizers, clipping, truncated BPTT and contexts."""
import numpy as np
import pytest

import fastrnn
from fastrnn import losses, optim
from gradcheck import assert_grad_close, numeric_grad


# -- Dense and Embedding --------------------------------------------------------
@pytest.mark.parametrize("activation", [None, "tanh", "relu", "sigmoid", "softmax"])
def test_dense_gradients(activation):
    rng = np.random.default_rng(0)
    dense = fastrnn.Dense(4, 3, activation=activation, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 2, 4))
    y, ctx = dense.forward(x)
    assert y.shape == (5, 2, 3)
    np.testing.assert_array_equal(y, dense(x))
    dy = rng.standard_normal(y.shape)
    dense.zero_grad()
    dx = dense.backward(ctx, dy)
    loss = lambda: float(np.sum(dense(x) * dy))  # noqa: E731
    assert_grad_close(dx, numeric_grad(loss, x), "dx")
    for name, p in dense.named_parameters():
        assert_grad_close(dense.grads[name], numeric_grad(loss, p), name)


def test_dense_equation():
    dense = fastrnn.Dense(3, 2, activation="tanh", dtype=np.float64, seed=2)
    x = np.random.default_rng(1).standard_normal((4, 3))
    sd = dense.state_dict()
    np.testing.assert_allclose(dense(x), np.tanh(x @ sd["weight"].T + sd["bias"]), atol=1e-15)


def test_embedding_gradient_and_one_hot_equivalence():
    rng = np.random.default_rng(2)
    emb = fastrnn.Embedding(6, 3, dtype=np.float64, seed=0)
    ids = np.array([[0, 5, 5], [2, 0, 1]])
    y, ctx = emb.forward(ids)
    one_hot = np.eye(6)[ids]
    np.testing.assert_allclose(y, one_hot @ emb.state_dict()["weight"], atol=0)
    dy = rng.standard_normal(y.shape)
    emb.zero_grad()
    assert emb.backward(ctx, dy) is None
    w = emb.parameters()[0]
    loss = lambda: float(np.sum(emb(ids) * dy))  # noqa: E731
    assert_grad_close(emb.grads["weight"], numeric_grad(loss, w), "weight")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 6\)"):
        emb(np.array([6]))
    with pytest.raises(TypeError, match="ids must hold integer ids"):
        emb(np.array([1.0]))


# -- losses ---------------------------------------------------------------------
def test_cross_entropy_per_sequence_and_per_step():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5)) * 3
    targets = np.array([0, 4, 2, 2])
    loss, grad = losses.softmax_cross_entropy(logits, targets)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(4), targets])), rel=1e-12)
    f = lambda: losses.softmax_cross_entropy(logits, targets)[0]  # noqa: E731
    assert_grad_close(grad, numeric_grad(f, logits), "dlogits")

    step_logits = rng.standard_normal((6, 3, 5))
    step_targets = rng.integers(0, 5, (6, 3))
    lengths = np.array([6, 2, 4])
    loss, grad = losses.softmax_cross_entropy(step_logits, step_targets, lengths=lengths)
    f = lambda: losses.softmax_cross_entropy(step_logits, step_targets, lengths=lengths)[0]  # noqa: E731
    assert_grad_close(grad, numeric_grad(f, step_logits), "dlogits per step")
    assert np.all(grad[2:, 1] == 0) and np.all(grad[4:, 2] == 0)
    # only the counted steps, each weighted 1 / count
    valid = [(t, b) for b, n in enumerate(lengths) for t in range(n)]
    by_hand = np.mean([losses.softmax_cross_entropy(step_logits[t, b][None],
                                                    step_targets[t, b][None])[0]
                       for t, b in valid])
    assert loss == pytest.approx(by_hand, rel=1e-12)
    bf_loss, bf_grad = losses.softmax_cross_entropy(step_logits.transpose(1, 0, 2),
                                                    step_targets.T, lengths=lengths,
                                                    batch_first=True)
    assert bf_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(bf_grad, grad.transpose(1, 0, 2), atol=1e-15)


def test_cross_entropy_is_stable_for_large_logits():
    loss, grad = losses.softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0) and np.all(np.isfinite(grad))


def test_mse():
    rng = np.random.default_rng(4)
    pred, target = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    loss, grad = losses.mse(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2), rel=1e-12)
    lengths = np.array([5, 3])
    loss, grad = losses.mse(pred, target, lengths=lengths)
    f = lambda: losses.mse(pred, target, lengths=lengths)[0]  # noqa: E731
    assert_grad_close(grad, numeric_grad(f, pred), "dpred")
    assert loss == pytest.approx(np.mean(np.concatenate(
        [((pred - target)[:5, 0]).ravel() ** 2, ((pred - target)[:3, 1]).ravel() ** 2])))


def test_loss_checks():
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        losses.softmax_cross_entropy(np.zeros((4, 3)), np.zeros(5, int))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 3\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="logits must hold floating-point"):
        losses.softmax_cross_entropy(np.zeros((2, 3), int), np.array([0, 1]))
    with pytest.raises(ValueError, match="target must have prediction's shape"):
        losses.mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 4\]"):
        losses.mse(np.zeros((4, 2, 1)), np.zeros((4, 2, 1)), lengths=[5, 1])


# -- optimizers and clipping ----------------------------------------------------
def test_clip_grad_norm():
    dense = fastrnn.Dense(3, 2, dtype=np.float64, seed=0)
    dense.grads["weight"][...] = 3.0
    dense.grads["bias"][...] = 4.0
    norm = fastrnn.clip_grad_norm(dense, 1.0)
    assert norm == pytest.approx(np.sqrt(6 * 9 + 2 * 16))
    total = np.sqrt(sum(np.sum(g ** 2) for g in dense.grads.values()))
    assert total == pytest.approx(1.0, rel=1e-5)
    assert fastrnn.clip_grad_norm(dense, 10.0) == pytest.approx(total)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        fastrnn.clip_grad_norm(dense, 0)


def test_optimizer_checks():
    dense = fastrnn.Dense(3, 2)
    with pytest.raises(TypeError, match="params must be a module"):
        optim.SGD("weights")
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.Adam(dense, lr=-1)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        optim.SGD(dense, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(dense, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([dense, dense])


# -- contexts -------------------------------------------------------------------
def test_context_misuse():
    a, b = fastrnn.GRU(3, 4), fastrnn.GRU(3, 4)
    x = np.zeros((5, 2, 3), np.float32)
    y, h, ctx = a.forward(x)
    with pytest.raises(ValueError, match="another module"):
        b.backward(ctx, np.zeros_like(y))
    with pytest.raises(TypeError, match="ctx must be the context returned by forward"):
        a.backward("ctx", np.zeros_like(y))
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 2, 4\), got \(5, 2, 3\)"):
        a.backward(a.forward(x)[2], np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dh_n must have shape \(1, 2, 4\)"):
        a.backward(a.forward(x)[2], np.zeros_like(y), np.zeros((2, 2, 4)))
    a.backward(ctx, np.zeros_like(y))
    with pytest.raises(ValueError, match="already been backpropagated"):
        a.backward(ctx, np.zeros_like(y))
    lstm = fastrnn.LSTM(3, 4)
    y, _, ctx = lstm.forward(x)
    with pytest.raises(TypeError, match=r"dh_n must be a pair \(dh_n, dc_n\)"):
        lstm.backward(ctx, np.zeros_like(y), np.zeros((1, 2, 4)))
    lstm.backward(ctx, np.zeros_like(y), (None, np.ones((1, 2, 4))))   # one of the pair
    cell = fastrnn.LSTMCell(3, 4)
    (h, c), cctx = cell.forward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"dh must be a pair \(dh, dc\)"):
        cell.backward(cctx, h)
    with pytest.raises(ValueError, match=r"dc must have shape \(2, 4\)"):
        cell.backward(cctx, (h, np.zeros((3, 4))))


def test_gradients_accumulate_and_zero_grad():
    layer = fastrnn.LSTM(3, 4, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _, ctx = layer.forward(x)
    layer.backward(ctx, np.ones_like(y))
    once = {k: v.copy() for k, v in layer.grads.items()}
    y, _, ctx = layer.forward(x)
    layer.backward(ctx, np.ones_like(y))
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * once[k], rtol=1e-12)
    assert set(layer.grads) == set(layer.state_dict())
    layer.zero_grad()
    assert all(np.all(v == 0) for v in layer.grads.values())


def test_weights_changed_after_forward_do_not_change_backward():
    """backward uses the weights of its forward, as autograd would."""
    layer = fastrnn.GRU(3, 4, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    y, _, ctx = layer.forward(x)
    dx_ref, _ = layer.backward(layer.forward(x)[2], np.ones_like(y))
    for p in layer.parameters():
        p += 0.5
    dx, _ = layer.backward(ctx, np.ones_like(y))
    np.testing.assert_allclose(dx, dx_ref, atol=1e-14)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 16])
def test_backward_reads_the_weights_its_forward_ran_with(kind, dtype, batch):
    """As above, on two threads, where the forward's threads copy the weights
    (batch 1: each thread its units' rows, the unit split) and where Python
    does (batch 16): the training buffer first holds other weights (an
    earlier step's), the weights change between forward and backward, and
    every gradient equals a twin's that kept them."""
    from fastrnn import _engine
    rng = np.random.default_rng(2)
    I, H = 24, 96
    layer = getattr(fastrnn, kind)(I, H, dtype=dtype, seed=0)
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    assert _engine._split_units(batch, 1, 2, gates * H * H * np.dtype(dtype).itemsize) \
        == (batch == 1)
    x = rng.standard_normal((7, batch, I)).astype(dtype)
    dy = rng.standard_normal((7, batch, H)).astype(dtype)
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(2)
    try:
        twin = getattr(fastrnn, kind)(I, H, dtype=dtype, seed=0)
        for p in layer.parameters():
            p += 0.25                      # an earlier step's weights in the buffer
        layer.backward(layer.forward(x)[2], dy)
        for p, q in zip(layer.parameters(), twin.parameters()):
            p[...] = q
        layer.zero_grad()
        # (the team policy forgets late partners: this forward runs on both threads)
        _engine._k.team_probe("reset")
        _, _, ctx = layer.forward(x)
        if batch == 1:
            assert _engine._k.team_probe("counts")["alone"] == 0
        for p in layer.parameters():
            p *= -1.5
        dx, _ = layer.backward(ctx, dy)
        dx_twin, _ = twin.backward(twin.forward(x)[2], dy)
    finally:
        fastrnn.set_num_threads(before)
    np.testing.assert_array_equal(dx, dx_twin)
    for name, g in twin.grads.items():
        np.testing.assert_array_equal(layer.grads[name], g, err_msg=name)


def _trace_buffers(ctx):
    """The buffers (ids of the owning arrays) a training context's traces hold."""
    _, _, traces, _ = ctx.trace
    return {id(a if a.base is None else a.base) for tr in traces
            for a in (tr.w_ih, tr.w_hh, tr.x, tr.gates, tr.h_prev, tr.c_prev) if a is not None}


@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU])
def test_training_buffers_reused_only_once_backpropagated(cls):
    """Training forwards keep their work arrays in pooled buffers (no fresh
    pages every step): a live context's buffers are never handed to another
    call; once backward is done with them, the next forward reuses them."""
    rng = np.random.default_rng(0)
    layer = cls(3, 5, num_layers=2, seed=0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    dy = rng.standard_normal((6, 2, 5)).astype(np.float32)
    _, _, ctx1 = layer.forward(x)
    _, _, ctx2 = layer.forward(2 * x)
    held1, held2 = _trace_buffers(ctx1), _trace_buffers(ctx2)
    assert held1.isdisjoint(held2)
    layer.zero_grad()
    dx2, _ = layer.backward(ctx2, dy)          # ctx1 stays alive meanwhile
    from fastrnn import _engine
    free = {id(b) for b in _engine.buffers(layer)._free[np.dtype(np.float32).str]}
    assert held2 <= free and free.isdisjoint(held1)
    _, _, ctx3 = layer.forward(x)
    assert _trace_buffers(ctx3) <= free
    dx1, _ = layer.backward(ctx1, dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    dx2_ref, _ = layer.backward(layer.forward(2 * x)[2], dy)
    dx1_ref, _ = layer.backward(layer.forward(x)[2], dy)
    np.testing.assert_array_equal(dx1, dx1_ref)
    np.testing.assert_array_equal(dx2, dx2_ref)
    for k, v in layer.grads.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-6, atol=1e-7)


def test_pool_parts_of_one_buffer():
    """BufferPool.take_parts: one pooled buffer, the arrays in it disjoint,
    each of its shape and at a multiple of 64 bytes from the buffer's start
    (None stays None); the buffer goes back whole and is taken again."""
    from fastrnn._buffers import BufferPool
    pool = BufferPool(keep=4)
    for dtype in (np.float32, np.float64):
        shapes = ((3, 5, 7), None, (2, 9), (1,), (4, 0), (2, 3, 11))
        buf, views = pool.take_parts(shapes, dtype)
        assert len(views) == len(shapes) and views[1] is None
        start = buf.__array_interface__["data"][0]
        for k, (shape, v) in enumerate(zip(shapes, views)):
            if shape is None:
                continue
            assert v.shape == shape and v.dtype == dtype and v.flags.c_contiguous
            assert (v.__array_interface__["data"][0] - start) % 64 == 0
            assert np.shares_memory(v, buf) or v.size == 0
            v[...] = k
        for k, v in enumerate(views):
            if v is not None:
                assert np.all(v == k)         # no view wrote over another
        pool.give_back(buf)
        again, _ = pool.take_parts(shapes, dtype)
        assert again.base is buf.base


# -- truncated BPTT and learning ------------------------------------------------
def test_truncated_bptt_equals_windows_run_by_hand():
    rng = np.random.default_rng(5)
    layer = fastrnn.GRU(2, 3, dtype=np.float64, seed=0)
    x = rng.standard_normal((10, 2, 2))
    target = rng.standard_normal((10, 2, 3))
    losses_tb, state = fastrnn.truncated_bptt(
        layer, x, 4, lambda y, w: losses.mse(y, target[w]))
    grads_tb = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    by_hand, h = [], None
    for w in (slice(0, 4), slice(4, 8), slice(8, 10)):
        y, h, ctx = layer.forward(x[w], h)
        loss, dy = losses.mse(y, target[w])
        layer.backward(ctx, dy)
        by_hand.append(loss)
    assert losses_tb == by_hand
    np.testing.assert_array_equal(state, h)
    for k in grads_tb:
        np.testing.assert_array_equal(grads_tb[k], layer.grads[k])
    # the carried state is the full run's state; gradients are cut at window edges
    y_full, h_full = layer(x)
    np.testing.assert_allclose(state, h_full, atol=1e-14)


@pytest.mark.parametrize("cls,task,threshold", [
    (fastrnn.LSTM, "sum", 0.9),      # is the sum of the 12 inputs positive?
    (fastrnn.GRU, "first", 0.95),    # is the first of the 12 inputs positive?
])
def test_model_learns_a_sequence_task(cls, task, threshold):
    """Many-to-one, end to end: recurrent layer + Dense + cross-entropy + Adam + clipping."""
    rng = np.random.default_rng(0)
    rnn = cls(1, 16, seed=0)
    head = fastrnn.Dense(16, 2, seed=1)
    opt = optim.Adam([rnn, head], lr=0.01)

    def batch(n):
        x = rng.standard_normal((12, n, 1)).astype(np.float32)
        signal = x[:, :, 0].sum(0) if task == "sum" else x[0, :, 0]
        return x, (signal > 0).astype(int)

    def accuracy():
        x, labels = batch(1000)
        return np.mean(head(rnn(x)[0][-1]).argmax(1) == labels)

    before = accuracy()
    for _ in range(300):
        x, labels = batch(32)
        opt.zero_grad()
        y, h, ctx = rnn.forward(x)
        logits, hctx = head.forward(y[-1])
        loss, dlogits = losses.softmax_cross_entropy(logits, labels)
        dy = np.zeros_like(y)
        dy[-1] = head.backward(hctx, dlogits)
        rnn.backward(ctx, dy)
        fastrnn.clip_grad_norm([rnn, head], 5.0)
        opt.step()
    after = accuracy()
    assert before < 0.75 and after > threshold, (before, after)
