"""Multi-step neurons against hand-computed sequences (models.md §1, §5.4).

Every expected spike train and membrane trace below was worked out by hand from

    h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau,   s[t] = [h[t] >= θ],   v[t] = v_reset if s[t] else h[t]

with v[-1] = v_reset. Inputs are dyadic rationals, so every intermediate value is exact in float32 and
the comparisons are exact.
"""
from __future__ import annotations

import math

import pytest
import torch

from snncompile.nn.neurons import (MultiStepLIF, MultiStepParametricLIF, MultiStepTernaryLIF,
                                   heaviside, make_neuron)


def _seq(values, dtype=torch.float32):
    """A [T, 1] tensor from a list (one neuron)."""
    return torch.tensor(values, dtype=dtype).unsqueeze(1)


def _run(neuron, values):
    neuron.record_v = True
    spikes = neuron(_seq(values))
    return spikes[:, 0].tolist(), neuron.v_seq[:, 0].tolist()


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _surrogate_grad(x: float, alpha: float = 4.0) -> float:
    return alpha * _sig(alpha * x) * (1.0 - _sig(alpha * x))


# ------------------------------------------------------------------------------------------------
# MultiStepLIF forward against hand-computed traces
# ------------------------------------------------------------------------------------------------

def test_lif_tau2_threshold1_hand_trace():
    # t0: h = 0 + (1-0)/2 = 0.5                  -> 0, v = 0.5
    # t1: h = 0.5 + (2-0.5)/2 = 1.25             -> 1, v = 0
    # t2: h = 0 + 0.5/2 = 0.25                   -> 0, v = 0.25
    # t3: h = 0.25 + (0.5-0.25)/2 = 0.375        -> 0, v = 0.375
    # t4: h = 0.375 + (1.5-0.375)/2 = 0.9375     -> 0, v = 0.9375
    # t5: h = 0.9375 + (-1-0.9375)/2 = -0.03125  -> 0, v = -0.03125
    # t6: h = -0.03125 + (3+0.03125)/2 = 1.484375-> 1, v = 0
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=1.0), [1.0, 2.0, 0.5, 0.5, 1.5, -1.0, 3.0])
    assert spikes == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert v == [0.5, 0.0, 0.25, 0.375, 0.9375, -0.03125, 0.0]


def test_lif_exact_threshold_fires():
    # x = [1, 1.5]: h0 = 0.5 (no spike), h1 = 0.5 + (1.5-0.5)/2 = 1.0 == θ -> fires (>=, not >)
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=1.0), [1.0, 1.5])
    assert spikes == [0.0, 1.0]
    assert v == [0.5, 0.0]
    # first step exactly at threshold: h0 = 2/2 = 1.0
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=1.0), [2.0])
    assert spikes == [1.0] and v == [0.0]
    # just below threshold does not fire: h0 = 1.9990234375/2 = 0.99951171875
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=1.0), [1.9990234375])
    assert spikes == [0.0] and v == [0.99951171875]


def test_lif_tau2_threshold_half_hand_trace():
    # θ = 0.5 (attention-output neurons)
    # t0: h = 1/2 = 0.5 == θ                      -> 1, v = 0
    # t1: h = 0                                   -> 0, v = 0
    # t2: h = 0.25                                -> 0, v = 0.25
    # t3: h = 0.25 + (0.5-0.25)/2 = 0.375         -> 0, v = 0.375
    # t4: h = 0.375 + (-2-0.375)/2 = -0.8125      -> 0, v = -0.8125
    # t5: h = -0.8125 + (2+0.8125)/2 = 0.59375    -> 1, v = 0
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=0.5), [1.0, 0.0, 0.5, 0.5, -2.0, 2.0])
    assert spikes == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert v == [0.0, 0.0, 0.25, 0.375, -0.8125, 0.0]


def test_lif_tau4_hand_trace():
    # tau = 4, θ = 1
    # t0: h = 2/4 = 0.5                           -> 0, v = 0.5
    # t1: h = 0.5 + (2-0.5)/4 = 0.875             -> 0, v = 0.875
    # t2: h = 0.875 + (2-0.875)/4 = 1.15625       -> 1, v = 0
    # t3: h = 4/4 = 1.0 == θ                      -> 1, v = 0
    # t4: h = 1.0                                 -> 1, v = 0
    # t5: h = -4/4 = -1.0                         -> 0, v = -1
    # t6: h = -1 + (0+1)/4 = -0.75                -> 0, v = -0.75
    spikes, v = _run(MultiStepLIF(tau=4.0, v_threshold=1.0), [2.0, 2.0, 2.0, 4.0, 4.0, -4.0, 0.0])
    assert spikes == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert v == [0.5, 0.875, 0.0, 0.0, 0.0, -1.0, -0.75]


def test_lif_negative_inputs_never_fire_and_decay_toward_input():
    # all-negative drive: h0 = -0.5, h1 = -0.5 + (-1+0.5)/2 = -0.75, h2 = -0.75 + (0+0.75)/2 = -0.375
    spikes, v = _run(MultiStepLIF(tau=2.0, v_threshold=1.0), [-1.0, -1.0, 0.0])
    assert spikes == [0.0, 0.0, 0.0]
    assert v == [-0.5, -0.75, -0.375]


def test_lif_nonzero_v_reset_hand_trace():
    # v_reset = -0.5, tau = 2, θ = 1, v[-1] = -0.5;  h = v + (x - (v + 0.5)) / 2
    # t0: h = -0.5 + (1 - 0)/2 = 0.0                -> 0, v = 0.0
    # t1: h = 0 + (3 - 0.5)/2 = 1.25                -> 1, v = -0.5 (reset to v_reset, not 0)
    # t2: h = -0.5 + (0 - 0)/2 = -0.5               -> 0, v = -0.5 (rests at v_reset)
    # t3: h = -0.5 + (2.5 - 0)/2 = 0.75             -> 0, v = 0.75
    # t4: h = 0.75 + (1.75 - 1.25)/2 = 1.0 == θ     -> 1, v = -0.5
    n = MultiStepLIF(tau=2.0, v_threshold=1.0, v_reset=-0.5)
    spikes, v = _run(n, [1.0, 3.0, 0.0, 2.5, 1.75])
    assert spikes == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert v == [0.0, -0.5, -0.5, 0.75, -0.5]


def test_lif_elementwise_independent_over_extra_dims():
    # two neurons side by side in one [T, 2, 1] tensor behave as if run alone
    a = [1.0, 2.0, 0.5, 0.5]
    b = [2.0, 0.0, -2.0, 4.0]
    n = MultiStepLIF()
    out = n(torch.tensor([a, b]).T.unsqueeze(-1))
    assert out.shape == (4, 2, 1)
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]   # see test_lif_tau2_threshold1_hand_trace
    # b: h0 = 1 -> 1; h1 = 0 -> 0; h2 = -1 -> 0; h3 = -1 + (4+1)/2 = 1.5 -> 1
    assert out[:, 1, 0].tolist() == [1.0, 0.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------
# recording, statelessness, validation
# ------------------------------------------------------------------------------------------------

def test_record_v_off_by_default_and_shape_when_on():
    n = MultiStepLIF()
    x = torch.randn(5, 3, 4)
    n(x)
    assert n.v_seq is None
    n.record_v = True
    s = n(x)
    assert n.v_seq.shape == x.shape == s.shape
    # post-reset membrane is exactly 0 wherever a spike was emitted (v_reset = 0)
    assert torch.all(n.v_seq[s == 1] == 0)
    n.record_v = False
    n(x)
    assert n.v_seq is None


def test_lif_is_stateless_between_calls():
    torch.manual_seed(0)
    n = MultiStepLIF()
    x = torch.rand(6, 4, 7) * 3
    first = n(x)
    second = n(x)
    assert torch.equal(first, second)
    # a strongly driven batch first does not change the result of a quiet batch afterwards
    quiet = torch.full((3, 2), 1.5)  # h0 = 0.75, h1 = 1.125 -> fires at t1 only, when alone
    alone = n(quiet)
    n(torch.full((3, 2), 100.0))
    after = n(quiet)
    assert torch.equal(alone, after)
    assert after[:, 0].tolist() == [0.0, 1.0, 0.0]
    # no state leaks between samples of one batch either: batching == running one by one
    batched = n(x)
    single = torch.stack([n(x[:, i]) for i in range(x.shape[1])], dim=1)
    assert torch.equal(batched, single)


def test_lif_rejects_bad_tau_and_scalar_sequence():
    with pytest.raises(ValueError):
        MultiStepLIF(tau=1.0)
    with pytest.raises(ValueError):
        MultiStepLIF(tau=0.5)
    with pytest.raises(ValueError, match=r"\[T, \.\.\.\]"):
        MultiStepLIF()(torch.ones(4))


# ------------------------------------------------------------------------------------------------
# current-free form (models.md §1.3)
# ------------------------------------------------------------------------------------------------

def _current_free(x: torch.Tensor, tau: float, theta: float):
    """v' = tau*V:  h' = v'(1 - 1/tau) + X,  S = [h' >= tau*θ],  v' = h'(1 - S). Pure Python floats."""
    T = x.shape[0]
    flat = x.reshape(T, -1).tolist()
    spikes, mem = [], []
    v = [0.0] * len(flat[0])
    for t in range(T):
        s_row, v_row = [], []
        for i, xi in enumerate(flat[t]):
            h = v[i] * (1.0 - 1.0 / tau) + xi
            s = 1.0 if h >= tau * theta else 0.0
            v[i] = h * (1.0 - s)
            s_row.append(s)
            v_row.append(v[i])
        spikes.append(s_row)
        mem.append(v_row)
    return (torch.tensor(spikes, dtype=torch.float64).reshape(x.shape),
            torch.tensor(mem, dtype=torch.float64).reshape(x.shape))


@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_current_free_form_equivalence_exact_dyadic(theta):
    # dyadic inputs (multiples of 1/64 in [-4, 4]) keep both forms exact, including ties at threshold
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-256, 257, (8, 4000), generator=g).to(torch.float64) / 64
    n = MultiStepLIF(tau=2.0, v_threshold=theta)
    n.record_v = True
    s = n(x)
    s_ref, v_ref = _current_free(x, 2.0, theta)
    assert torch.equal(s, s_ref)
    assert torch.equal(2.0 * n.v_seq, v_ref)
    assert 0.05 < s.mean().item() < 0.6  # the comparison is not vacuous


@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_current_free_form_equivalence_random_real(theta):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 5000, generator=g, dtype=torch.float64) * 1.5 + 0.5
    s = MultiStepLIF(tau=2.0, v_threshold=theta)(x)
    s_ref, _ = _current_free(x, 2.0, theta)
    assert torch.equal(s, s_ref)


# ------------------------------------------------------------------------------------------------
# surrogate gradient and detach_reset
# ------------------------------------------------------------------------------------------------

def test_heaviside_forward_fires_at_zero():
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 3.0])
    assert heaviside(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_surrogate_gradient_is_sigmoid_derivative_alpha4():
    points = [-1.0, -0.25, 0.0, 0.5, 2.0]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    heaviside(x, 4.0).sum().backward()
    expected = [_surrogate_grad(p, 4.0) for p in points]
    assert expected[2] == 1.0  # alpha * 1/2 * 1/2
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12)
    # hand values: 4*s*(1-s) with s = sigmoid(4x); x=0.5 -> s = sigmoid(2) = 0.8807970779778823
    assert x.grad[3].item() == pytest.approx(4 * 0.8807970779778823 * 0.11920292202211769, rel=1e-12)


def test_lif_gradient_through_charge():
    # one step, x = 2, θ = 1: h = x/2 = 1, d spike / d x = sg'(h - θ) * 1/tau = 1.0 * 0.5
    x = torch.tensor([[2.0]], requires_grad=True)
    MultiStepLIF()(x).sum().backward()
    assert x.grad.item() == pytest.approx(0.5, abs=1e-7)
    # custom alpha is honoured: alpha=2 -> sg'(0) = 2/4
    x = torch.tensor([[2.0]], requires_grad=True)
    MultiStepLIF(surrogate_alpha=2.0)(x).sum().backward()
    assert x.grad.item() == pytest.approx(0.25, abs=1e-7)


@pytest.mark.parametrize("detach_reset", [True, False])
def test_detach_reset(detach_reset):
    # x = [3, 1], θ = 1: h0 = 1.5 fires, v0 = (1 - s0) h0 = 0, h1 = v0/2 + x1/2 = 0.5, s1 = 0.
    # d s1 / d x0 = sg'(h1-1) * 1/2 * d v0 / d x0, with d v0/dx0 = (1-s0)/2 - h0 * [not detached] * sg'(h0-1)/2
    x = torch.tensor([[3.0], [1.0]], dtype=torch.float64, requires_grad=True)
    out = MultiStepLIF(detach_reset=detach_reset)(x)
    assert out[:, 0].tolist() == [1.0, 0.0]
    out[1].sum().backward()
    g_h1 = _surrogate_grad(-0.5)
    if detach_reset:
        expected_dx0 = 0.0
    else:
        expected_dx0 = g_h1 * 0.5 * (-1.5 * _surrogate_grad(0.5) * 0.5)
    assert x.grad[0, 0].item() == pytest.approx(expected_dx0, abs=1e-12)
    assert x.grad[1, 0].item() == pytest.approx(g_h1 * 0.5, rel=1e-12)


def test_default_detach_reset_is_true_as_upstream():
    assert MultiStepLIF().detach_reset is True
    assert MultiStepLIF().surrogate_alpha == 4.0
    assert MultiStepLIF().tau == 2.0 and MultiStepLIF().v_threshold == 1.0 and MultiStepLIF().v_reset == 0.0


# ------------------------------------------------------------------------------------------------
# MultiStepParametricLIF
# ------------------------------------------------------------------------------------------------

def test_plif_parameter_name_and_init():
    n = MultiStepParametricLIF()
    assert [name for name, _ in n.named_parameters()] == ["w"]
    assert list(n.state_dict()) == ["w"]
    assert n.w.shape == () and n.w.item() == 0.0  # -ln(2 - 1) = 0  ->  1/tau = 0.5
    assert MultiStepParametricLIF(init_tau=3.0).w.item() == pytest.approx(-math.log(2.0), abs=1e-7)
    assert MultiStepParametricLIF(init_tau=1.5).w.item() == pytest.approx(math.log(2.0), abs=1e-7)
    assert torch.sigmoid(MultiStepParametricLIF(init_tau=4.0).w).item() == pytest.approx(0.25, abs=1e-7)


def test_plif_init_matches_lif():
    torch.manual_seed(3)
    x = torch.randn(6, 50) * 2
    assert torch.equal(MultiStepParametricLIF()(x), MultiStepLIF()(x))


def test_plif_charge_uses_sigmoid_w_not_init_tau():
    n = MultiStepParametricLIF(init_tau=2.0)
    with torch.no_grad():
        n.w.fill_(math.log(3.0))  # sigmoid(ln 3) = 3/4
    k = torch.sigmoid(n.w).item()
    assert k == pytest.approx(0.75, abs=1e-7)
    # θ = 1, k = 3/4:  h0 = 0.75 (0), h1 = 0.75 + (1-0.75)*0.75 = 0.9375 (0),
    #                  h2 = 0.9375 + (2-0.9375)*0.75 = 1.734375 (1), h3 = 0.5*0.75 = 0.375 (0)
    spikes, v = _run(n, [1.0, 1.0, 2.0, 0.5])
    assert spikes == [0.0, 0.0, 1.0, 0.0]
    assert v == pytest.approx([0.75, 0.9375, 0.0, 0.375], abs=1e-6)
    # with 1/tau = 1/2 (the init_tau value) the membrane would be [0.5, 0.75, 0, 0.25]
    assert v != pytest.approx([0.5, 0.75, 0.0, 0.25], abs=1e-3)
    # a decay that changes the spike train: x = [1.25, 1.25]; k = 3/4: h1 = 0.9375 + 0.3125*0.75 = 1.171875 fires;
    # k = 1/2 would give h0 = 0.625, h1 = 0.9375 (no spike)
    assert n(_seq([1.25, 1.25]))[:, 0].tolist() == [0.0, 1.0]
    assert MultiStepLIF()(_seq([1.25, 1.25]))[:, 0].tolist() == [0.0, 0.0]


def test_plif_gradient_reaches_w():
    # one step, v = 0: h = x * sigmoid(w); ds/dw = sg'(h - θ) * x * sigmoid'(w). x = 2, w = 0 -> 1 * 2 * 1/4
    n = MultiStepParametricLIF()
    x = torch.tensor([[2.0]])
    n(x).sum().backward()
    assert n.w.grad is not None
    assert n.w.grad.item() == pytest.approx(0.5, abs=1e-6)
    # over a longer random sequence the gradient is finite and non-zero
    n.w.grad = None
    torch.manual_seed(4)
    n(torch.randn(8, 64) * 2).sum().backward()
    assert torch.isfinite(n.w.grad) and n.w.grad.item() != 0.0


# ------------------------------------------------------------------------------------------------
# MultiStepTernaryLIF
# ------------------------------------------------------------------------------------------------

def test_ternary_hand_trace():
    # tau = 2, θ = 1, fires +1 if h >= 1, -1 if h <= -1, resets to 0 on either
    # t0: h = 2/2 = 1.0 (exact +θ)                -> +1, v = 0
    # t1: h = -2/2 = -1.0 (exact -θ)              -> -1, v = 0
    # t2: h = 0.5                                 ->  0, v = 0.5
    # t3: h = 0.5 + (-3-0.5)/2 = -1.25            -> -1, v = 0
    # t4: h = 0.25                                ->  0, v = 0.25
    # t5: h = 0.25 + (1.5-0.25)/2 = 0.875         ->  0, v = 0.875
    # t6: h = 0.875 + (-1-0.875)/2 = -0.0625      ->  0, v = -0.0625
    # t7: h = -0.0625 + (-1+0.0625)/2 = -0.53125  ->  0, v = -0.53125
    # t8: h = -0.53125 + (-2+0.53125)/2 = -1.265625 -> -1, v = 0
    # t9: h = 3/2 = 1.5                           -> +1, v = 0
    n = MultiStepTernaryLIF(tau=2.0, v_threshold=1.0)
    spikes, v = _run(n, [2.0, -2.0, 1.0, -3.0, 0.5, 1.5, -1.0, -1.0, -2.0, 3.0])
    assert spikes == [1.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0]
    assert v == [0.0, 0.0, 0.5, 0.0, 0.25, 0.875, -0.0625, -0.53125, 0.0, 0.0]


def test_ternary_threshold_half_and_values():
    # θ = 0.5: h0 = 0.5 -> +1 ; h1 = -0.25 -> 0 ; h2 = -0.25 + (-1+0.25)/2 = -0.625 -> -1
    spikes, v = _run(MultiStepTernaryLIF(v_threshold=0.5), [1.0, -0.5, -1.0])
    assert spikes == [1.0, 0.0, -1.0]
    assert v == [0.0, -0.25, 0.0]
    torch.manual_seed(5)
    out = MultiStepTernaryLIF()(torch.randn(6, 200) * 3)
    assert set(out.unique().tolist()) == {-1.0, 0.0, 1.0}


def test_ternary_rejects_scalar_sequence_like_lif():
    with pytest.raises(ValueError, match=r"\[T, \.\.\.\]"):
        MultiStepTernaryLIF()(torch.tensor([2.0, -2.0, 0.0, 3.0]))


def test_ternary_stateless_between_calls():
    n = MultiStepTernaryLIF()
    x = torch.tensor([[2.0, -1.5], [0.5, -1.5], [1.0, 0.0]])
    assert torch.equal(n(x), n(x))


# ------------------------------------------------------------------------------------------------
# make_neuron
# ------------------------------------------------------------------------------------------------

def test_make_neuron_modes():
    lif = make_neuron("lif")
    assert type(lif) is MultiStepLIF and lif.tau == 2.0 and lif.v_threshold == 1.0
    assert make_neuron("lif", v_threshold=0.5).v_threshold == 0.5
    plif = make_neuron("plif")
    assert type(plif) is MultiStepParametricLIF and plif.w.item() == 0.0 and plif.detach_reset


@pytest.mark.parametrize("mode", ["if", "alif", "blif", "LIF", "", "ternary"])
def test_make_neuron_rejects_unknown_modes(mode):
    with pytest.raises(ValueError, match="spike_mode"):
        make_neuron(mode)
