"""The unit split's team policy (fastrnn/_team.h): after a call in which the
team made no progress for more than 40% of the time (its threads waiting
for each other), the next
calls run on the calling thread alone, in stretches that double while tries
of the team keep coming late and halve with each healthy team call; the
results do not depend on which way a call ran. (Whether a partner comes
late is timing, which no test asserts: bench.coexist measures it.)"""
import numpy as np
import pytest

import fastrnn
from fastrnn import _engine, _kernels

VARIANTS = [module for _, module in _kernels.builds()]


@pytest.fixture(params=VARIANTS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def policy(request):
    module = request.param
    module.team_probe("reset")
    yield module
    module.team_probe("reset")


def _sizes(module, n, threads=2):
    return [module.team_probe("size", threads) for _ in range(n)]


def test_healthy_calls_keep_the_team(policy):
    assert _sizes(policy, 3) == [2, 2, 2]
    policy.team_probe("report", 2, 400_000, 1_000_000)  # lost exactly 40%: not late
    policy.team_probe("report", 2, 250_000, 1_000_000)  # lost 25%: healthy
    policy.team_probe("report", 2, 49_000, 50_000)   # waited less than 50 us: healthy
    assert _sizes(policy, 3) == [2, 2, 2]
    assert _sizes(policy, 2, threads=1) == [1, 1]
    policy.team_probe("report", 1, 100_000, 100_000)  # a call on one thread says nothing
    assert _sizes(policy, 2) == [2, 2]


def test_late_partners_give_stretches_alone_that_double(policy):
    expected = []
    got = []
    for stretch in (1, 2, 4, 8):
        policy.team_probe("report", 2, 410_000, 1_000_000)  # late: then `stretch` calls alone
        got += _sizes(policy, stretch + 1)
        expected += [1] * stretch + [2]
    assert got == expected
    for _ in range(12):                               # the stretch stops doubling at 256
        policy.team_probe("report", 2, 90_000, 100_000)
    assert _sizes(policy, 257) == [1] * 256 + [2]


def test_healthy_call_halves_the_next_stretch(policy):
    for _ in range(3):                                # next stretch: 8
        policy.team_probe("report", 2, 60_000, 100_000)
        _sizes(policy, 8)                             # run out what was given
    policy.team_probe("report", 2, 300_000, 1_000_000)  # between: stays 8
    policy.team_probe("report", 2, 250_000, 1_000_000)  # healthy: 8 -> 4
    policy.team_probe("report", 2, 60_000, 100_000)
    assert _sizes(policy, 5) == [1, 1, 1, 1, 2]


def test_counts_follow_the_calls(policy):
    assert policy.team_probe("counts") == {"team": 0, "late": 0, "alone": 0}
    policy.team_probe("report", 2, 10_000, 100_000)
    policy.team_probe("report", 2, 90_000, 100_000)   # late: the next call alone
    policy.team_probe("report", 1, 90_000, 100_000)   # a call alone is no team call
    assert _sizes(policy, 2) == [1, 2]
    assert policy.team_probe("counts") == {"team": 2, "late": 1, "alone": 1}
    policy.team_probe("reset")
    assert policy.team_probe("counts") == {"team": 0, "late": 0, "alone": 0}


def test_probe_refuses_unknown_actions(policy):
    with pytest.raises(ValueError, match="action"):
        policy.team_probe("bogus")


@pytest.mark.parametrize("kind", ["lstm", "gru-reset-before", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_calls_alone_equal_team_calls(kind, dtype, monkeypatch):
    """A unit-split layer (forward, training forward and backward) gives the
    same numbers on the calling thread alone as with its team (to the bit on
    float32 panels)."""
    module = _engine._k
    monkeypatch.setattr(_engine, "_split_units", lambda *a: True)
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(3)
    if kind == "lstm":
        layer = fastrnn.LSTM(6, 37, dtype=dtype, seed=4)
    elif kind == "rnn":
        layer = fastrnn.RNN(6, 37, dtype=dtype, seed=4)
    else:
        layer = fastrnn.GRU(6, 37, reset_after=False, dtype=dtype, seed=4)
    x = rng.standard_normal((9, 3, 6)).astype(dtype)
    lengths = np.array([9, 4, 7])

    def run():
        y, state = layer(x, lengths=lengths)
        layer.zero_grad()
        yt, _, ctx = layer.forward(x, lengths=lengths)
        dx, _ = layer.backward(ctx, np.ones_like(yt))
        return [y, *state, yt, dx, *(g.copy() for g in layer.grads.values())]

    module.team_probe("reset")
    try:
        team = run()                                  # (as a team unless a partner came late)
        counts = module.team_probe("counts")
        assert counts["team"] + counts["alone"] == 3  # forward, training, backward
        module.team_probe("reset")
        for _ in range(3):                            # next stretch alone: 4 calls,
            module.team_probe("report", 2, 90_000, 100_000)   # then 8 after the next report
        alone = run()                                 # 3 calls: forward, training, backward
        # (the three reports above count as late team calls)
        assert module.team_probe("counts") == {"team": 3, "late": 3, "alone": 3}
        assert _sizes(module, 2) == [1, 2]            # they did run alone
    finally:
        module.team_probe("reset")
        fastrnn.set_num_threads(None)
    # float32 products on panels sum every unit's row in one order whatever
    # the share; BLAS (float64) may pick other kernels for other shares
    exact = dtype == np.float32 and module.panel_kernel() != "blas"
    for a, b in zip(team, alone):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=(1e-13 if dtype == np.float64
                                                           else 1e-6) * max(1, np.abs(a).max()))


def test_teams_larger_than_the_barrier_run_capped(monkeypatch):
    """A unit-split call asking for more threads than the spin barrier has
    slots (64) runs a team of at most 64 and gives the same numbers as one
    thread (the kernels are called directly: set_num_threads stops at four
    per CPU)."""
    from fastrnn._kernels import _recurrent
    assert _recurrent.barrier_seconds(100, 3, True) > 0      # capped, does not hang
    layer = fastrnn.LSTM(5, 130, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 5)).astype(np.float32)
    plan = _engine._plan(None, 6, 2, 1, single_block=True)
    b_ih, b_hh = layer._biases(0)
    outputs = []
    for threads in (1, 100):
        y = np.empty((6, 2, 130), np.float32)
        h_n, c_n = np.empty((2, 130), np.float32), np.empty((2, 130), np.float32)
        zeros = np.zeros((2, 130), np.float32)
        _engine._k.forward_layer_units(
            layer._kind, x, (layer._w_ih[0][0], layer._w_hh[0][0], b_ih, b_hh),
            (False, plan.lengths, plan.perm, plan.n_active), (zeros, zeros, y, h_n, c_n),
            6, threads, True)
        outputs.append((y, h_n, c_n))
    want, _ = layer(x)
    np.testing.assert_allclose(outputs[0][0], want, rtol=0, atol=1e-6)
    for a, b in zip(*outputs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
