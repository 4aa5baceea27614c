"""Spiking attention cores and the full attention branch against naive per-element loops.

The reference functions below are written directly from the equations of models.md §2.4 (SDSA),
§3.2-§3.5 (STAtten), §4.2 (SSA), §5.3 (A2OS2A) and §6.2 (DS2TA), with explicit Python loops over
every index, in float64. They share no code with ``snncompile.nn.attention``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from snncompile.nn.attention import (AttentionLUT, TemporalWindow, erode, linear_attention,
                                     sdsa_column_sum, statten_scores)
from snncompile.nn.sdt import SpikingSelfAttention
from snncompile.config import ModelConfig

T, B, H, N, D_HEAD = 4, 2, 2, 5, 3


def _spikes(*shape, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).to(torch.float64)


def _qkv(seed=0, shape=(T, B, H, N, D_HEAD), p=0.5):
    return (_spikes(*shape, p=p, seed=seed), _spikes(*shape, p=p, seed=seed + 1),
            _spikes(*shape, p=p, seed=seed + 2))


# ------------------------------------------------------------------------------------------------
# naive references
# ------------------------------------------------------------------------------------------------

def naive_statten(q, k, v, chunk, scale):
    """out[t,b,h,n,j] = Σ_i Q[t,n,i] · scale · Σ_{t' in block(t)} Σ_m K[t',m,i] V[t',m,j]."""
    q, k, v = (x.detach().double().numpy() for x in (q, k, v))
    Tn, Bn, Hn, Nn, dn = q.shape
    out = np.zeros((Tn, Bn, Hn, Nn, dn))
    for t in range(Tn):
        block = range((t // chunk) * chunk, (t // chunk) * chunk + chunk)
        for b in range(Bn):
            for h in range(Hn):
                m = np.zeros((dn, dn))
                for i in range(dn):
                    for j in range(dn):
                        acc = 0.0
                        for tt in block:
                            for n in range(Nn):
                                acc += k[tt, b, h, n, i] * v[tt, b, h, n, j]
                        m[i, j] = acc * scale
                for n in range(Nn):
                    for j in range(dn):
                        acc = 0.0
                        for i in range(dn):
                            acc += q[t, b, h, n, i] * m[i, j]
                        out[t, b, h, n, j] = acc
    return torch.from_numpy(out)


def naive_qk_scores(q, k):
    """S[t,b,h,n,m] = Σ_i Q[t,b,h,n,i] K[t,b,h,m,i]."""
    q, k = (x.detach().double().numpy() for x in (q, k))
    Tn, Bn, Hn, Nn, dn = q.shape
    s = np.zeros((Tn, Bn, Hn, Nn, Nn))
    for t in range(Tn):
        for b in range(Bn):
            for h in range(Hn):
                for n in range(Nn):
                    for m in range(Nn):
                        acc = 0.0
                        for i in range(dn):
                            acc += q[t, b, h, n, i] * k[t, b, h, m, i]
                        s[t, b, h, n, m] = acc
    return s


def naive_scores_times_v(s, v):
    """out[t,b,h,n,j] = Σ_m S[t,b,h,n,m] V[t,b,h,m,j]."""
    v = v.detach().double().numpy()
    Tn, Bn, Hn, Nn, dn = v.shape
    out = np.zeros((Tn, Bn, Hn, Nn, dn))
    for t in range(Tn):
        for b in range(Bn):
            for h in range(Hn):
                for n in range(Nn):
                    for j in range(dn):
                        acc = 0.0
                        for m in range(Nn):
                            acc += s[t, b, h, n, m] * v[t, b, h, m, j]
                        out[t, b, h, n, j] = acc
    return torch.from_numpy(out)


def naive_linear(q, k, v):
    """(Q Kᵀ) V per timestep."""
    return naive_scores_times_v(naive_qk_scores(q, k), v)


def naive_erode(x):
    """3x3 max over the last two axes, window clipped at the borders (padding never wins)."""
    a = x.detach().double().numpy()
    lead = a.shape[:-2]
    Hs, Ws = a.shape[-2:]
    out = np.zeros_like(a)
    for idx in np.ndindex(*lead):
        for y in range(Hs):
            for xx in range(Ws):
                best = -math.inf
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xc = y + dy, xx + dx
                        if 0 <= yy < Hs and 0 <= xc < Ws:
                            best = max(best, a[idx + (yy, xc)])
                out[idx + (y, xx)] = best
    return torch.from_numpy(out)


def naive_column_sum(k, v, dvs):
    """s[t,b,h,0,j] = Σ_n (K⊙V)[t,b,h,n,j]  (after a 3x3 erode of K⊙V over (n, j) when dvs)."""
    kv = np.zeros(tuple(k.shape))
    kn, vn = k.detach().double().numpy(), v.detach().double().numpy()
    for idx in np.ndindex(*kv.shape):
        kv[idx] = kn[idx] * vn[idx]
    kv_t = torch.from_numpy(kv)
    if dvs:
        kv_t = naive_erode(kv_t)
    kv = kv_t.numpy()
    Tn, Bn, Hn, Nn, dn = kv.shape
    out = np.zeros((Tn, Bn, Hn, 1, dn))
    for t in range(Tn):
        for b in range(Bn):
            for h in range(Hn):
                for j in range(dn):
                    acc = 0.0
                    for n in range(Nn):
                        acc += kv[t, b, h, n, j]
                    out[t, b, h, 0, j] = acc
    return torch.from_numpy(out)


def naive_window(x, window, tau):
    """X~[t] = Σ_{δ=0}^{W-1} exp(-δ/τ) X[t-δ], with X[t] = 0 for t < 0."""
    a = x.detach().double().numpy()
    out = np.zeros_like(a)
    for t in range(a.shape[0]):
        for idx in np.ndindex(*a.shape[1:]):
            acc = 0.0
            for delta in range(window):
                if t - delta >= 0:
                    acc += math.exp(-delta / tau) * a[(t - delta,) + idx]
            out[(t,) + idx] = acc
    return torch.from_numpy(out)


# ------------------------------------------------------------------------------------------------
# STAtten core
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 2, 4])
@pytest.mark.parametrize("scale", [0.125, 1 / 3])
def test_statten_scores_matches_naive(chunk, scale):
    q, k, v = _qkv(seed=10 * chunk)
    out = statten_scores(q, k, v, chunk, scale)
    ref = naive_statten(q, k, v, chunk, scale)
    assert out.shape == (T, B, H, N, D_HEAD)
    if scale == 0.125:
        assert torch.equal(out, ref)  # integers times a power of two: exact
    else:
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert ref.abs().sum() > 0


def test_statten_float32_exact_on_spikes():
    q, k, v = (x.float() for x in _qkv(seed=3))
    assert torch.equal(statten_scores(q, k, v, 2, 0.125).double(), naive_statten(q, k, v, 2, 0.125))


def test_statten_chunk1_is_per_timestep_linear_attention():
    q, k, v = _qkv(seed=4)
    torch.testing.assert_close(statten_scores(q, k, v, 1, 0.25), naive_linear(q, k, v) * 0.25)


def test_statten_chunk_T_mixes_all_timesteps():
    # Bk = T: every timestep's output sees K, V from all timesteps (one block)
    q, k, v = _qkv(seed=5)
    full = statten_scores(q, k, v, T, 1.0)
    k2 = k.clone()
    k2[T - 1] = 1 - k2[T - 1]
    changed = statten_scores(q, k2, v, T, 1.0)
    for t in range(T):
        assert not torch.equal(full[t], changed[t])


def test_statten_non_causal_inside_block_only():
    q, k, v = _qkv(seed=6)
    q[0] = 1.0  # make the first timestep of block 0 sensitive to every entry of M
    v[1] = 1.0
    base = statten_scores(q, k, v, 2, 0.125)
    k2 = k.clone()
    k2[1] = 1 - k2[1]  # flip K at the last timestep of block 0
    changed = statten_scores(q, k2, v, 2, 0.125)
    assert not torch.equal(base[0], changed[0])   # earlier timestep of the same block sees the future
    assert torch.equal(base[2:], changed[2:])      # other blocks untouched
    # and the reverse direction: changing block 1 does not touch block 0
    k3 = k.clone()
    k3[3] = 1 - k3[3]
    assert torch.equal(statten_scores(q, k3, v, 2, 0.125)[:2], base[:2])


@pytest.mark.parametrize("steps,chunk", [(4, 3), (5, 2), (6, 4)])
def test_statten_rejects_partial_blocks(steps, chunk):
    q, k, v = _qkv(seed=7, shape=(steps, 1, 1, 3, 2))
    with pytest.raises(ValueError, match="chunk_size"):
        statten_scores(q, k, v, chunk, 1.0)


# ------------------------------------------------------------------------------------------------
# linear attention (SSA / A2OS2A)
# ------------------------------------------------------------------------------------------------

def test_linear_attention_equals_qk_then_v():
    q, k, v = _qkv(seed=8)
    out = linear_attention(q, k, v)
    assert torch.equal(out, naive_linear(q, k, v))


def test_linear_attention_real_k_ternary_v():
    # A2OS2A operands: binary Q, non-negative real K, ternary V
    g = torch.Generator().manual_seed(9)
    q = _spikes(T, B, H, N, D_HEAD, seed=9)
    k = torch.relu(torch.randn(T, B, H, N, D_HEAD, generator=g, dtype=torch.float64))
    v = torch.randint(-1, 2, (T, B, H, N, D_HEAD), generator=g).double()
    torch.testing.assert_close(linear_attention(q, k, v), naive_linear(q, k, v), rtol=1e-12, atol=1e-12)


def test_linear_attention_is_per_timestep():
    q, k, v = _qkv(seed=11)
    base = linear_attention(q, k, v)
    k2 = k.clone()
    k2[2] = 1 - k2[2]
    changed = linear_attention(q, k2, v)
    assert torch.equal(base[[0, 1, 3]], changed[[0, 1, 3]])
    assert not torch.equal(base[2], changed[2])


# ------------------------------------------------------------------------------------------------
# SDSA column sum, erode
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dvs", [False, True])
def test_sdsa_column_sum_matches_naive(dvs):
    q, k, v = _qkv(seed=12, p=0.4)
    out = sdsa_column_sum(k, v, dvs)
    assert out.shape == (T, B, H, 1, D_HEAD)
    assert torch.equal(out, naive_column_sum(k, v, dvs))


def test_sdsa_dvs_erode_changes_counts():
    # a single coincidence at (n=2, j=1) becomes a 3x3 blob over (token, channel) before the sum
    k = torch.zeros(1, 1, 1, 5, 3, dtype=torch.float64)
    v = torch.zeros_like(k)
    k[0, 0, 0, 2, 1] = v[0, 0, 0, 2, 1] = 1.0
    assert sdsa_column_sum(k, v, False)[0, 0, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert sdsa_column_sum(k, v, True)[0, 0, 0, 0].tolist() == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("shape", [(2, 2, 3, 4, 5), (3, 1, 2, 1, 1), (2, 2, 2, 5, 3)])
def test_erode_matches_naive_on_reals(shape):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) - 1.0  # mostly negative: padding must not act as 0
    assert torch.equal(erode(x), naive_erode(x))


def test_erode_is_or_on_spikes():
    x = _spikes(2, 2, 3, 4, 4, p=0.2, seed=14)
    e = erode(x)
    assert torch.equal(e, naive_erode(x))
    assert set(e.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(e >= x)


# ------------------------------------------------------------------------------------------------
# DS2TA: AttentionLUT, TemporalWindow
# ------------------------------------------------------------------------------------------------

def _random_lut(heads=H, max_score=D_HEAD, seed=15):
    lut = AttentionLUT(heads, max_score)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lut.table.copy_(torch.randn(heads, max_score + 1, generator=g))
    return lut


def test_lut_initialised_to_identity():
    lut = AttentionLUT(3, 4)
    assert lut.table.shape == (3, 5)
    assert torch.equal(lut.table.detach(), torch.arange(5.0).repeat(3, 1))
    scores = torch.randint(0, 5, (2, 1, 3, 4, 4)).float()
    assert torch.equal(lut(scores), scores)


def test_lut_forward_is_exact_table_lookup():
    lut = _random_lut()
    g = torch.Generator().manual_seed(16)
    scores = torch.randint(0, D_HEAD + 1, (T, B, H, N, N), generator=g).float()
    out = lut(scores)
    table = lut.table.detach()
    for idx in np.ndindex(T, B, H, N, N):
        h = idx[2]
        assert out[idx].item() == table[h, int(scores[idx].item())].item()


def test_lut_gradient_is_forward_difference():
    lut = _random_lut()
    table = lut.table.detach()
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0]).repeat(1, 1, H, 1, 1)  # [1,1,H,1,4]: every a per head
    scores.requires_grad_(True)
    lut(scores).sum().backward()
    for h in range(H):
        for a in range(D_HEAD + 1):
            expected = (table[h, a + 1] - table[h, a]).item() if a < D_HEAD else 0.0
            assert scores.grad[0, 0, h, 0, a].item() == pytest.approx(expected, abs=1e-6)
    # the table itself learns: gradient = how often each entry was used
    assert torch.equal(lut.table.grad, torch.ones(H, D_HEAD + 1))


@pytest.mark.parametrize("bad", [-1.0, float(D_HEAD + 1)])
def test_lut_rejects_out_of_range_scores(bad):
    lut = AttentionLUT(H, D_HEAD)
    scores = torch.zeros(1, 1, H, 2, 2)
    scores[0, 0, 1, 1, 0] = bad
    with pytest.raises(ValueError, match="outside"):
        lut(scores)


def test_temporal_window_hand_values():
    w = TemporalWindow(window=3, tau_init=4.0)
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [2.0]])
    out = w(x)[:, 0].tolist()
    # impulse at t=0 -> 1, e^{-1/4}, e^{-2/4}, then 0 (outside the window); 2 at t=4 -> 2
    expected = [1.0, math.exp(-0.25), math.exp(-0.5), 0.0, 2.0]
    assert out == pytest.approx(expected, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("window,tau", [(3, 4.0), (2, 1.5), (5, 2.0), (1, 4.0)])
def test_temporal_window_matches_naive(window, tau):
    g = torch.Generator().manual_seed(17)
    x = (torch.rand(4, 2, 3, 2, generator=g) < 0.5).float()
    w = TemporalWindow(window, tau)
    torch.testing.assert_close(w(x).double(), naive_window(x, window, tau), rtol=1e-6, atol=1e-6)


def test_temporal_window_is_causal_and_learns_tau():
    w = TemporalWindow(3, 4.0)
    x = _spikes(6, 2, 4, seed=18).float()
    base = w(x)
    x2 = x.clone()
    x2[2] = 1 - x2[2]
    changed = w(x2)
    assert torch.equal(base[:2], changed[:2])          # the past does not see the future
    assert not torch.equal(base[2], changed[2])
    assert not torch.equal(base[4], changed[4])        # delta = 2 still inside the window
    assert torch.equal(base[5:], changed[5:])          # delta = 3 outside
    w(x).sum().backward()
    assert w.log_tau.grad is not None and w.log_tau.grad.item() != 0.0
    assert w.log_tau.item() == pytest.approx(math.log(4.0))


# ------------------------------------------------------------------------------------------------
# the full attention branch, per mode, recomputed from its submodules
# ------------------------------------------------------------------------------------------------

MODES = ["SDT", "STAtten", "SSA", "A2OS2A", "DS2TA"]
DIM, HEADS, GRID = 16, 4, 4     # d = 4, N = 16


def _cfg(mode, dvs=False, **kw):
    return ModelConfig(attention=mode, img_size=4 * GRID, in_channels=2 if dvs else 3, dim=DIM,
                       num_heads=HEADS, layers=1, time_steps=4, chunk_size=2, pooling_stat="0011",
                       dvs_mode=dvs, **kw)


def _attention(mode, dvs=False, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = _cfg(mode, dvs, **kw)
    assert cfg.token_grid == GRID
    attn = SpikingSelfAttention(cfg)
    g = torch.Generator().manual_seed(seed + 100)
    for m in attn.modules():
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.5 / math.sqrt(m.in_channels)))
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(1.2 + 0.5 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    if mode == "A2OS2A":  # centre the ternary neuron's drive so that both polarities occur
        with torch.no_grad():
            attn.v_bn.bias.copy_(1.5 * torch.randn(attn.v_bn.bias.shape, generator=g))
    if mode == "DS2TA":
        with torch.no_grad():
            attn.lut.table.copy_(torch.randn(attn.lut.table.shape, generator=g) + torch.arange(5.0))
    attn.eval()
    u = torch.randn(4, 2, DIM, GRID, GRID, generator=g) * 2 + 1
    return cfg, attn, u


def _conv_bn_frames(conv, bn, x):
    T_, B_ = x.shape[:2]
    y = bn(conv(x.flatten(0, 1)))
    return y.reshape(T_, B_, *y.shape[1:])


def _split_heads_loop(x, heads):
    """[T,B,C,Hs,Ws] -> [T,B,H,N,d], channel c = h*d + j, token n = y*Ws + x."""
    Tn, Bn, C, Hs, Ws = x.shape
    d = C // heads
    out = torch.zeros(Tn, Bn, heads, Hs * Ws, d, dtype=x.dtype)
    for h in range(heads):
        for j in range(d):
            for n in range(Hs * Ws):
                out[:, :, h, n, j] = x[:, :, h * d + j, n // Ws, n % Ws]
    return out


def _merge_heads_loop(a, Hs, Ws):
    """[T,B,H,N,d] -> [T,B,C,Hs,Ws], the inverse of _split_heads_loop."""
    Tn, Bn, heads, Nn, d = a.shape
    out = torch.zeros(Tn, Bn, heads * d, Hs, Ws, dtype=a.dtype)
    for h in range(heads):
        for j in range(d):
            for n in range(Nn):
                out[:, :, h * d + j, n // Ws, n % Ws] = a[:, :, h, n, j]
    return out


def _capture(module):
    store = {}

    def hook(_, inputs, output):
        store["in"] = inputs[0].detach().clone()
        store["out"] = output.detach().clone()
    return store, module.register_forward_hook(hook)


def _naive_branch(cfg, attn, u):
    """Re-compute SpikingSelfAttention.forward from its submodules and the naive cores.

    Returns (output, core) where core is the real-valued attention core before attn_lif
    (or the SDSA column sums for SDT). In DVS mode SDT leaves Q un-pooled (the Spike-Driven
    Transformer repository's SDSA, models.md §2.5).
    """
    mode, dvs, heads = cfg.attention, cfg.dvs_mode, cfg.num_heads
    Tn, Bn, C, Hs, Ws = u.shape
    s = attn.shortcut_lif(u)

    def project(name, x):
        if mode == "DS2TA":
            win = getattr(attn, f"{name}_window")
            x = naive_window(x, win.window, math.exp(win.log_tau.item())).float()
        return _conv_bn_frames(getattr(attn, f"{name}_conv"), getattr(attn, f"{name}_bn"), x)

    q = attn.q_lif(project("q", s))
    if mode == "A2OS2A":
        k = torch.clamp(project("k", s), min=0.0)
        v = attn.v_ternary(project("v", s))
    else:
        k = attn.k_lif(project("k", s))
        v = attn.v_lif(project("v", s))
    if dvs:
        k, v = (naive_erode(x).float() for x in (k, v))
        if cfg.attention != "SDT":  # the SDT repository erodes K and V only
            q = naive_erode(q).float()
    qh, kh, vh = (_split_heads_loop(x, heads) for x in (q, k, v))

    if mode == "SDT":
        counts = naive_column_sum(kh, vh, dvs).float()
        mask = (counts >= 1).float()          # models.md §2.4: talking_heads_lif == [count >= 1]
        a = qh * mask
        if dvs:
            a = naive_erode(a).float()
        a = _merge_heads_loop(a, Hs, Ws)
        core = counts
    else:
        if mode == "STAtten":
            core = naive_statten(qh, kh, vh, cfg.chunk_size, cfg.statten_scale)
        elif mode == "SSA":
            core = naive_linear(qh, kh, vh) * cfg.ssa_scale
        elif mode == "A2OS2A":
            core = naive_linear(qh, kh, vh)
        else:
            scores = naive_qk_scores(qh, kh)
            table = attn.lut.table.detach().double().numpy()
            f = np.zeros_like(scores)
            for idx in np.ndindex(*scores.shape):
                f[idx] = table[idx[2], int(round(scores[idx]))]
            core = naive_scores_times_v(f, vh) * cfg.ds2ta_scale
        a = attn.attn_lif(_merge_heads_loop(core.float(), Hs, Ws))
        if dvs:
            p = naive_erode(s).float()
            a = a * p + p
    out = u + project("proj", a)
    return out, core


@pytest.mark.parametrize("dvs", [False, True], ids=["static", "dvs"])
@pytest.mark.parametrize("mode", MODES)
def test_attention_branch_matches_naive(mode, dvs):
    cfg, attn, u = _attention(mode, dvs, seed=MODES.index(mode) + 10 * dvs)
    lif = attn.talking_heads_lif if mode == "SDT" else attn.attn_lif
    store, handle = _capture(lif)
    if mode == "A2OS2A":
        v_store, v_handle = _capture(attn.v_ternary)
    with torch.no_grad():
        out = attn(u)
        ref, core = _naive_branch(cfg, attn, u)
    handle.remove()
    if mode == "A2OS2A":
        v_handle.remove()
        assert set(v_store["out"].unique().tolist()) == {-1.0, 0.0, 1.0}
    assert out.shape == u.shape
    # the neuron after the core received exactly the naive core
    if mode == "SDT":
        assert torch.equal(store["in"], core)
    elif mode in ("A2OS2A", "DS2TA"):  # real-valued operands (ReLU K / LUT values)
        got = store["in"].reshape(4, 2, HEADS, DIM // HEADS, GRID * GRID).transpose(3, 4)
        torch.testing.assert_close(got.double(), core, rtol=1e-5, atol=1e-5)
    else:  # binary operands times a power of two: exact
        got = store["in"].reshape(4, 2, HEADS, DIM // HEADS, GRID * GRID).transpose(3, 4)
        assert torch.equal(got.double(), core)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the test is not vacuous: the attention neuron fires sometimes but not always
    rate = store["out"].mean().item()
    assert 0.0 < rate < 1.0, rate


@pytest.mark.parametrize("dvs", [False, True], ids=["static", "dvs"])
def test_sdsa_talking_heads_lif_is_count_at_least_one(dvs):
    # models.md §2.4: for non-negative integer counts the θ=0.5 LIF fires iff count >= 1, stateless
    for seed in range(3):
        cfg, attn, u = _attention("SDT", dvs, seed=20 + seed)
        store, handle = _capture(attn.talking_heads_lif)
        with torch.no_grad():
            attn(u)
        handle.remove()
        counts, mask = store["in"], store["out"]
        assert torch.equal(counts, counts.round()) and counts.min() >= 0
        assert torch.equal(mask, (counts >= 1).float())
        assert 0 < mask.mean() < 1
    # and directly on hand-picked count sequences, including 1 after 0 and repeated small counts
    lif = attn.talking_heads_lif
    counts = torch.tensor([[0.0, 1.0, 0.0, 2.0, 1.0, 1.0, 0.0, 5.0]]).T
    assert lif(counts)[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]


def test_attention_neuron_layout_per_mode():
    for mode in MODES:
        attn = SpikingSelfAttention(_cfg(mode))
        assert hasattr(attn, "talking_heads_lif") == (mode == "SDT")
        assert hasattr(attn, "attn_lif") == (mode != "SDT")
        lif = attn.talking_heads_lif if mode == "SDT" else attn.attn_lif
        assert lif.v_threshold == 0.5 and lif.tau == 2.0
        assert hasattr(attn, "v_ternary") == (mode == "A2OS2A")
        assert hasattr(attn, "lut") == (mode == "DS2TA")


def test_statten_attn_lif_is_stateful_constructed():
    # a core value of 0.75 at two consecutive steps: stateless [x/2 >= 0.5] never fires,
    # the LIF carries 0.375 over and fires at the second step (0.375 + (0.75-0.375)/2 = 0.5625)
    cfg, attn, _ = _attention("STAtten")
    assert cfg.statten_scale == 0.25
    q = torch.zeros(2, 1, 1, 4, 2)
    k = torch.zeros_like(q)
    v = torch.zeros_like(q)
    q[:, 0, 0, 0, 0] = 1
    k[:, 0, 0, :3, 0] = 1
    v[:, 0, 0, :3, 0] = 1
    core = statten_scores(q, k, v, 1, cfg.statten_scale)
    x = core[:, 0, 0, 0, 0]
    assert x.tolist() == [0.75, 0.75]
    assert attn.attn_lif(x.unsqueeze(1))[:, 0].tolist() == [0.0, 1.0]
    assert ((x / 2) >= 0.5).float().tolist() == [0.0, 0.0]


def test_statten_attn_lif_is_stateful_in_module():
    # models.md §9.3: unlike SDSA's neuron, STAtten's attn_lif differs from a stateless threshold
    differs = 0
    for seed in range(3):
        _, attn, u = _attention("STAtten", seed=30 + seed)
        store, handle = _capture(attn.attn_lif)
        with torch.no_grad():
            attn(u)
        handle.remove()
        stateless = (store["in"] / 2 >= 0.5).float()
        differs += int((store["out"] != stateless).sum())
    assert differs > 0


def test_attention_branch_is_stateless_between_calls():
    for mode in MODES:
        _, attn, u = _attention(mode, seed=40)
        with torch.no_grad():
            first = attn(u)
            attn(u * 3)
            assert torch.equal(attn(u), first)
