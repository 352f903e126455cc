"""The kernels' entry points (forward_layer, forward_layer_units,
backward_layer, backward_layer_units, layer_grads) check every array against
the call's sizes and sorted rows before a thread starts (the kernels index
them unchecked): a wrong shape, plan, packed row or token id is a ValueError
naming it, never a read or write past an array. fastrnn's engine always passes
matching arrays; these calls are what a caller of the private kernel
module could pass. Each runs in a child process, so that a missing check
fails one test instead of crashing the run."""
import textwrap

import pytest

from isolated import run_isolated

PRELUDE = '''
from fastrnn._kernels import recurrent as k
from fastrnn._kernels._cells import CellKind, gate_stride
rng = np.random.default_rng(0)
T, B, I, H = 5, 3, 6, 4
f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
ip = lambda *a: np.array(a, np.intp)

def refused(call, *names):
    """call() raises a ValueError whose message holds one of names."""
    try:
        call()
    except ValueError as e:
        assert any(n in str(e) for n in names), (names, e)
    else:
        raise AssertionError(f"ran: {names}")
'''


def _run(code):
    """code (indented as written) after PRELUDE, in a child; it must print ok."""
    assert run_isolated(PRELUDE + textwrap.dedent(code)).stdout.strip() == "ok"


@pytest.mark.parametrize("kind", ["LSTM", "GRU_RESET_AFTER", "RNN_TANH"])
def test_forward_layer_units_checks_every_array(kind):
    _run(f'''
        kind = CellKind.{kind}
        lstm = kind == CellKind.LSTM
        G = {{"LSTM": 4, "GRU_RESET_AFTER": 3, "RNN_TANH": 1}}["{kind}"] * H
        w_ih, w_hh, b = f(G, I), f(G, H), f(1, G)
        plan = (False, np.full(B, T, np.intp), ip(0, 1, 2), np.full(T, B, np.intp))

        def args(x=None, w=None, ends=None, keep=None):
            ends = ends or (f(B, H), f(B, H), np.zeros((T, B, H), np.float32),
                            np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
            return dict(x=f(T, B, I) if x is None else x, w=w or (w_ih, w_hh, b, b),
                        ends=ends, keep=keep)

        def run(a, **options):
            k.forward_layer_units(kind, a["x"], a["w"], plan, a["ends"], T, 2,
                                  keep=a["keep"], **options)

        run(args())
        N = B * T
        keep = (f(N, I), f(N, gate_stride(kind, H)), f(N, H), f(N, H), None)
        run(args(keep=keep))                     # training: the kept arrays' shapes
        refused(lambda: run(args(x=f(T + 1, B, I))), "plan")      # (its steps from x)
        refused(lambda: run(args(x=f(T, B - 1, I))), "x must have shape")
        refused(lambda: run(args(x=f(T, B, I + 1))), "x must have shape")
        refused(lambda: run(args(w=(f(G + 1, I), w_hh, b, b))), "W_ih")
        refused(lambda: run(args(w=(w_ih, f(G - 1, H), b, b))), "W_hh")
        refused(lambda: run(args(w=(w_ih, w_hh, f(1, G - 1), b))), "b_ih")
        good = args()["ends"]
        for i, name in enumerate(("h0", "c0", "y", "h_n", "c_n")):
            if name in ("c0", "c_n") and not lstm:
                continue
            short = list(good)
            short[i] = good[i][..., :-1].copy() if name != "y" else f(T - 1, B, H)
            refused(lambda: run(args(ends=tuple(short))), f"({{name}})")
        for i in range(4 if lstm else 3):
            bad = list(keep)
            bad[i] = keep[i][:-1].copy()
            refused(lambda: run(args(keep=tuple(bad))), f"keep[{{i}}]")
        # the weights' copy for backward: written whole, refused unless it fits
        into = (np.zeros((G, I), np.float32), np.zeros((G, H), np.float32))
        run(args(keep=keep), weights_into=into)
        assert np.array_equal(into[0], w_ih) and np.array_equal(into[1], w_hh)
        for bad in ((np.zeros((G, I + 1), np.float32), into[1]),
                    (into[0], np.zeros((G - 1, H), np.float32))):
            refused(lambda: run(args(keep=keep), weights_into=bad), "weights_into")
        refused(lambda: run(args(), weights_into=into), "weights_into")   # inference
        if lstm:
            run(args(), variant=(0.0, False, f(1, 3 * H)))
            for peep in (f(3, 3 * H), f(1, 3 * H - 1), f(2, 3 * H)):
                refused(lambda: run(args(), variant=(0.0, False, peep)), "peepholes")
        print("ok")
    ''')


def test_forward_layer_checks_every_array_plan_and_token():
    _run('''
        kind, G, D = CellKind.LSTM, 4 * H, 2
        w = (f(D, G, I), f(D, G, H), f(D, G), f(D, G))
        lengths = ip(5, 4, 2)
        n_active = np.array([(lengths > s).sum() for s in range(T)], np.intp)
        plan = [np.array([0, 1], np.intc), lengths, ip(2, 0, 1), n_active, ip(0, 1, 3), None]

        def ends(y_cols=D * H):
            return (f(D, B, H), f(D, B, H), np.zeros((T, B, y_cols), np.float32),
                    np.zeros((D, B, H), np.float32), np.zeros((D, B, H), np.float32))

        def run(x=None, weights=w, e=None, p=None, keep=None, ids=None, variant=None):
            k.forward_layer(kind, f(T, B, I) if x is None else x, weights,
                            tuple(plan if p is None else p), e or ends(), T, 2, keep=keep,
                            ids=ids, variant=variant)

        run()
        N = int(lengths.sum())
        keep = (f(D, N, I), f(D, N, 4 * H), f(D, N, H), f(D, N, H), None)
        training = list(plan)
        training[5] = ip(0, 5)                   # block 1 starts after row 0's 5 steps
        run(p=training, keep=keep)
        refused(lambda: run(x=f(T, B + 1, I)), "x must have shape")
        refused(lambda: run(weights=(w[0][:, :-1].copy(), w[1], w[2], w[3])), "W_ih")
        refused(lambda: run(weights=(w[0][:1], w[1], w[2], w[3])), "directions")
        refused(lambda: run(weights=(w[0], w[1][:, :-1].copy(), w[2], w[3])), "W_hh")
        refused(lambda: run(weights=(w[0], w[1], w[2], w[3][:, :-1].copy())), "b_hh")
        refused(lambda: run(e=ends(H)), "(y)")
        e = list(ends())
        e[3] = e[3][:1].copy()
        refused(lambda: run(e=tuple(e)), "(h_n)")
        refused(lambda: run(keep=(keep[0], keep[1][:, :-1].copy(), keep[2], keep[3], None),
                            p=training), "keep[1]")
        refused(lambda: run(keep=keep), "block_offsets")        # inference's plan
        bad_offsets = list(training)
        bad_offsets[5] = ip(0, 4)
        refused(lambda: run(p=bad_offsets, keep=keep), "block_offsets")
        for i, value, what in (
                (4, ip(0, 2), "plan: bounds"),                 # blocks short of B rows
                (4, ip(0, 2, 1, 3), "plan: bounds"),           # not rising
                (4, ip(1, 3), "plan: bounds"),                 # not from row 0
                (0, np.zeros(1, np.intc), "directions"),       # one flag for two
                (1, ip(5, 4, 6), "plan:"),                     # not longest first
                (2, ip(0, 1, 3), "plan:"),                     # a row past B
                (3, n_active[:-1], "plan:")):                  # a step short
            bad = list(plan)
            bad[i] = value
            refused(lambda: run(p=bad), what)
        # peepholes of each direction
        refused(lambda: run(variant=(0.0, False, f(1, 3 * H))), "peepholes")
        refused(lambda: run(variant=(0.0, False, f(D, 3 * H - 1))), "peepholes")
        # token ids index rows of W_ih transposed (D, V, G)
        V = 7
        wt = np.ascontiguousarray(f(D, G, V).transpose(0, 2, 1))
        tw = (f(D, G, V), w[1], w[2], w[3])
        ids = rng.integers(0, V, (T, B)).astype(np.intp)
        run(x=wt, weights=tw, ids=ids)
        for bad_id in (V, -1):
            wrong = ids.copy()
            wrong[2, 1] = bad_id
            refused(lambda: run(x=wt, weights=tw, ids=wrong), "token ids must be in")
        refused(lambda: run(x=wt, weights=tw, ids=ids[:, :2]), "ids must have shape")
        print("ok")
    ''')


@pytest.mark.parametrize("kind", ["LSTM", "GRU_RESET_AFTER"])
def test_backward_layer_units_checks_every_array(kind):
    _run(f'''
        from fastrnn._kernels._cells import grad_stride
        kind = CellKind.{kind}
        lstm = kind == CellKind.LSTM
        G = (4 if lstm else 3) * H
        N = T * B
        plan = (False, np.full(B, T, np.intp), ip(0, 1, 2), np.full(T, B, np.intp))
        stored = (f(N, gate_stride(kind, H)), f(N, H), f(N, H))
        ends = (f(B, H), f(B, H), np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))

        def run(w=None, dy=None, s=stored, e=ends, dg=None, variant=None):
            k.backward_layer_units(kind, f(G, H) if w is None else w, plan, s,
                                   f(T, B, H) if dy is None else dy, e,
                                   np.zeros((N, grad_stride(kind, H)), np.float32)
                                   if dg is None else dg, 2, variant=variant)

        run()
        refused(lambda: run(w=f(G - 1, H)), "(w_hh)", "w_hh")
        refused(lambda: run(dy=f(T, B - 1, H)), "dy")
        refused(lambda: run(dy=f(T, B, H + 1)), "dy")
        refused(lambda: run(dg=f(N - 1, grad_stride(kind, H))), "dgates")
        for i in range(3 if lstm else 2):
            bad = list(stored)
            bad[i] = stored[i][:-1].copy()
            refused(lambda: run(s=tuple(bad)), f"stored[{{i}}]")
        for i in range(4):
            if i in (1, 3) and not lstm:
                continue
            bad = list(ends)
            bad[i] = ends[i][:-1].copy()
            refused(lambda: run(e=tuple(bad)), f"ends[{{i}}]")
        if lstm:
            refused(lambda: run(variant=(0.0, False, f(1, 3 * H - 1))), "peepholes")
        print("ok")
    ''')


def test_backward_layer_checks_every_array_and_plan():
    _run('''
        from fastrnn._kernels._cells import grad_stride
        kind, G, D = CellKind.LSTM, 4 * H, 2
        lengths = ip(5, 4, 2)
        N = int(lengths.sum())
        n_active = np.array([(lengths > s).sum() for s in range(T)], np.intp)
        plan = (np.array([0, 1], np.intc), lengths, ip(2, 0, 1), n_active, ip(0, 1, 3), ip(0, 5))
        stored = (f(D, N, gate_stride(kind, H)), f(D, N, H), f(D, N, H))
        ends = tuple(f(D, B, H) for _ in range(4))

        def run(p=plan, w=None, dy=None, s=stored, e=ends, dg=None):
            k.backward_layer(kind, f(D, G, H) if w is None else w, p, s,
                             f(T, B, D * H) if dy is None else dy, e,
                             np.zeros((D, N, grad_stride(kind, H)), np.float32)
                             if dg is None else dg, 2)

        run()
        refused(lambda: run(w=f(D, G, H - 1)), "w_hh")
        refused(lambda: run(w=f(1, G, H)), "directions")
        refused(lambda: run(dy=f(T, B, H)), "dy")
        refused(lambda: run(dg=f(D, N, grad_stride(kind, H) - 1)), "dgates")
        refused(lambda: run(s=(stored[0], stored[1][:, :-1].copy(), stored[2])), "stored[1]")
        refused(lambda: run(e=(ends[0], ends[1], ends[2][:, :-1].copy(), ends[3])), "ends[2]")
        for i, value in ((5, ip(0, 4)), (5, None), (4, ip(0, 3, 3))):
            bad = list(plan)
            bad[i] = value
            refused(lambda: run(p=tuple(bad)), "plan")
        print("ok")
    ''')


def test_layer_grads_checks_every_array_and_index():
    _run('''
        from fastrnn._kernels._cells import grad_stride
        kind, G, D = CellKind.LSTM, 4 * H, 2
        N, F = 12, T * B
        inverse = np.full((D, F), -1, np.intp)
        inverse[:, :N] = np.arange(N)
        stored = [f(D, N, I), f(D, N, gate_stride(kind, H)), f(D, N, H), f(D, G, I)]
        grads = [np.zeros((D, G, I), np.float32), np.zeros((D, G, H), np.float32),
                 np.zeros((D, G), np.float32), np.zeros((D, G), np.float32)]
        dg = f(D, N, grad_stride(kind, H))

        def run(s=stored, g=grads, inv=inverse, dx=None, d=dg, ids=None):
            k.layer_grads(kind, d, tuple(s), tuple(g), inv,
                          np.zeros((F, I), np.float32) if dx is None else dx, 2, keep_ids=ids)

        run()
        run(g=grads[:2] + [np.zeros((D, 0), np.float32)] * 2)     # no biases
        refused(lambda: run(d=f(D, N, grad_stride(kind, H) + 1)), "dgates")
        refused(lambda: run(d=f(D, N + 1, grad_stride(kind, H))), "stored[1]", "dgates")
        for i, name in enumerate(("stored[0]", "stored[1]", "stored[2]", "stored[3]")):
            bad = list(stored)
            bad[i] = stored[i][:, :-1].copy()
            refused(lambda: run(s=bad), name, "stored[3]", "dgates")
        for i, name in enumerate(("grads[0]", "grads[1]", "grads[2]", "grads[3]")):
            bad = list(grads)
            bad[i] = grads[i][:1].copy()
            refused(lambda: run(g=bad), name)
        refused(lambda: run(dx=np.zeros((F, I + 1), np.float32)), "dx")
        refused(lambda: run(inv=inverse[:, :-1].copy()), "inverse")
        wrong = inverse.copy()
        wrong[1, 3] = N
        refused(lambda: run(inv=wrong), "inverse must be in")
        # token input: W_ih's columns are the tokens, and no dX
        V = 9
        tok = [np.empty((D, 0, V), np.float32), stored[1], stored[2], f(D, G, V)]
        tgrads = [np.zeros((D, G, V), np.float32)] + grads[1:]
        ids = rng.integers(0, V, (D, N)).astype(np.intp)
        none = np.empty((D, 0), np.intp)
        k.layer_grads(kind, dg, tuple(tok), tuple(tgrads), none, np.empty((0, V), np.float32),
                      2, keep_ids=ids)
        for bad_id in (V, -1):
            bad = ids.copy()
            bad[0, 5] = bad_id
            refused(lambda: k.layer_grads(kind, dg, tuple(tok), tuple(tgrads), none,
                                          np.empty((0, V), np.float32), 2, keep_ids=bad),
                    "keep_ids must be in")
        print("ok")
    ''')


def test_unit_call_checks_its_weights_and_peepholes():
    """UnitCall (a bound layer call) checks the weights, biases and
    peepholes it binds as forward_layer_units does (_units_setup)."""
    _run('''
        kind, G = CellKind.LSTM, 4 * H
        w = (f(G, I), f(G, H), f(1, G), f(1, G))
        plan = (False, np.full(1, 8, np.intp), ip(0), np.full(8, 1, np.intp))
        k.UnitCall(kind, w, plan, 8, 8, 2)
        k.UnitCall(kind, w, plan, 8, 8, 2, variant=(0.0, False, f(1, 3 * H)))
        for i, name in enumerate(("W_ih", "W_hh", "b_ih", "b_hh")):
            bad = list(w)
            bad[i] = w[i][:-1].copy() if i < 2 else w[i][:, :-1].copy()
            refused(lambda: k.UnitCall(kind, tuple(bad), plan, 8, 8, 2), name)
        for peep in (f(2, 3 * H), f(1, 3 * H + 1)):
            refused(lambda: k.UnitCall(kind, w, plan, 8, 8, 2, variant=(0.0, False, peep)),
                    "peepholes")
        print("ok")
    ''')
