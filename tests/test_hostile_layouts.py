"""Every array a kernel reads, in every layout numpy can make (hostile input, issue 10.1).

Token ids, inputs, lengths, states, output gradients and weights are given
as structured-array fields, odd-strided and negative-strided views,
broadcast views, big-endian, unaligned, Fortran-ordered, memory-mapped and
read-only arrays. Each role runs in its own process (a misread stride is a
segfault), and every result must equal, bit for bit, the result for a plain
C-contiguous copy of the same values; the caller's array is never modified.
"""
import textwrap

import pytest

from isolated import run_isolated

HARNESS = """
import layouts

def check(base, use):
    '''use(a) -> list of arrays; compare each variant of base with its plain copy.'''
    for name, make in layouts.VARIANTS.items():
        arr = make(base)
        before = layouts.plain(arr)
        got = use(arr)
        want = use(before)
        assert len(got) == len(want)
        for k, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, (name, k, g.shape, w.shape)
            assert np.array_equal(g, w, equal_nan=g.dtype.kind == "f"), (name, k)
        assert np.array_equal(layouts.plain(arr), before), (name, "input modified")
        print(name, "ok")

def flat(*parts):
    '''Arrays (and nested tuples/lists/dicts of arrays) as one list.'''
    out = []
    for p in parts:
        if isinstance(p, dict):
            out += flat(*p.values())
        elif isinstance(p, (tuple, list)):
            out += flat(*p)
        elif p is not None:
            out.append(np.asarray(p))
    return out
"""

ROLES = {
    "token-ids": """
        gru = fastrnn.GRU(5, 4, seed=0)
        bi = fastrnn.LSTM(5, 3, batch_first=True, bidirectional=True, seed=1)
        emb = fastrnn.Embedding(5, 2, seed=2)
        def use(ids):
            gru.zero_grad()
            y, h, ctx = gru.forward(ids, lengths=[6, 4, 1])
            gru.backward(ctx, np.ones_like(y))
            return flat(gru(ids), gru(ids[:, 0]), gru(ids[:1]), bi(ids.T), gru.grads,
                        emb(ids), fastrnn.data.Vocabulary("abcde").decode(ids[:, 1]),
                        fastrnn.losses.softmax_cross_entropy(np.ones((6, 3, 5)), ids))
        for dtype in (np.int64, np.int32, np.uint16):
            check(((np.arange(18).reshape(6, 3) * 7) % 5).astype(dtype), use)
    """,
    "inputs": """
        lstm = fastrnn.LSTM(4, 6, seed=0)
        cell = fastrnn.GRUCell(4, 6, seed=1)
        dense = fastrnn.Dense(4, 2, seed=2)
        bf = fastrnn.RNN(4, 3, batch_first=True, seed=3)
        def use(x):
            lstm.zero_grad()
            y, h, ctx = lstm.forward(x, lengths=[5, 2, 4])
            dx, dh = lstm.backward(ctx, np.ones_like(y))
            return flat(lstm(x), lstm(x[:, :1]), lstm(x[:, 0]), lstm(x[:1]), y, h, dx, dh,
                        lstm.grads, cell(x[0]), dense(x), bf(x.transpose(1, 0, 2)),
                        fastrnn.truncated_bptt(lstm, x, 2, lambda y, t: (y.sum(), np.ones_like(y))))
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            check(rng.standard_normal((5, 3, 4)).astype(dtype), use)
    """,
    "lengths": """
        gru = fastrnn.GRU(2, 3, bidirectional=True, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 3, 2)).astype(np.float32)
        def use(lengths):
            gru.zero_grad()
            y, h, ctx = gru.forward(x, lengths=lengths)
            gru.backward(ctx, np.ones_like(y))
            return flat(gru(x, lengths=lengths), y, h, gru.grads,
                        fastrnn.losses.mse(x, np.zeros_like(x), lengths=lengths))
        for dtype in (np.int64, np.int32):
            check(np.array([5, 2, 4], dtype=dtype), use)
    """,
    "states": """
        gru = fastrnn.GRU(2, 3, num_layers=2, seed=0)
        lstm = fastrnn.LSTM(2, 3, seed=1)
        cell = fastrnn.LSTMCell(2, 3, seed=2)
        x = np.random.default_rng(0).standard_normal((4, 2, 2)).astype(np.float32)
        def use(h):
            return flat(gru(x, h), gru(x[:1], h), lstm(x, (h[:1], h[1:])),
                        lstm(x[:, 0], (h[:1, 0], h[1:, 0])), cell(x[0], (h[0], h[1])))
        check(np.random.default_rng(1).standard_normal((2, 2, 3)).astype(np.float32), use)
        check(np.random.default_rng(2).standard_normal((2, 2, 3)), use)
    """,
    "output-gradients": """
        lstm = fastrnn.LSTM(2, 3, bidirectional=True, batch_first=True, seed=0)
        dense = fastrnn.Dense(6, 2, seed=1)
        x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
        def use(dy):
            lstm.zero_grad()
            dense.zero_grad()
            y, (h, c), ctx = lstm.forward(x)
            dx, dhx = lstm.backward(ctx, dy, (dy[:, :2, :3].transpose(1, 0, 2), None))
            _, dctx = dense.forward(y)
            ddense = dense.backward(dctx, dy[..., :2])
            return flat(dx, dhx, lstm.grads, ddense, dense.grads)
        check(np.random.default_rng(1).standard_normal((2, 4, 6)).astype(np.float32), use)
    """,
    "weights": """
        src = fastrnn.GRU(3, 3, num_layers=2, seed=0)
        x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
        names = list(src.state_dict())
        # every entry as a (9, 3) block: weights, and biases padded to that shape
        stacked = np.stack([np.resize(v, (9, 3)) for v in src.state_dict().values()])
        def use_resized(w):
            layer = fastrnn.GRU(3, 3, num_layers=2, seed=5)
            sd = {n: (w[i] if src.state_dict()[n].ndim == 2 else w[i][:, 0])
                  for i, n in enumerate(names)}
            layer.load_state_dict(sd)
            return flat(layer(x), layer.state_dict())
        check(stacked, use_resized)
    """,
}


@pytest.mark.parametrize("role", list(ROLES))
def test_every_layout_reads_the_same_values(role):
    out = run_isolated(HARNESS + textwrap.dedent(ROLES[role])).stdout
    assert out.count("ok") >= 9, out
