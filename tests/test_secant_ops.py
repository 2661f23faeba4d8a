"""method="secant" on every operation class (igkit.backends.torch_secant's rules).

For each class a small seeded float64 model that uses it: (a) every piece is complete to float64
rounding where the rule is exact (the summed |residual| of all pieces, relative), (b) the
attributions approach a Gauss-Legendre 2048 reference faster than Gauss-Legendre does at equal
evaluations, and (c) the architectures once refused (a max-pool ResNet stem, a MobileNetV3 block
with squeeze-excite and hard-swish, a ConvNeXt block, a tiny ViT block, a Sequential ending in
nn.Softmax) run and land within 1e-3 of the reference with a modest number of pieces.

The models double as the zoo of ``benchmarks/secant_ops.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import igkit
from igkit.core import strategies

# --- models, each seeded and in float64 --------------------------------------------------------


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn


class Smooth(nn.Module):
    """Elementwise exp, log, sqrt, rsqrt, reciprocal, powers (x ** c and c ** x), abs and
    clamp after a ReLU layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(8 * 6, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        g = self.conv(x)
        parts = [
            torch.exp(-g * 0.5), torch.log(1.0 + h), torch.sqrt(h + 0.1), torch.rsqrt(1.0 + h),
            1.0 / (2.0 + g), (h + 0.5) ** 1.5, 2.0 ** g.tanh(), g.abs().clamp(max=0.8),
        ]
        return self.head(torch.cat([p.mean((2, 3)) for p in parts], 1))


class SoftmaxInside(nn.Module):
    """A softmax and a log-softmax inside the model, and logsumexp."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(13, 4)

    def forward(self, x):
        h = F.relu(self.conv(x)).mean((2, 3))
        z = self.fc(h)
        a = torch.softmax(2.0 * z, dim=1)
        b = F.log_softmax(z, dim=-1)
        c = torch.logsumexp(z, dim=1, keepdim=True)
        return self.head(torch.cat([a, b, c], 1))


class Products(nn.Module):
    """Products of two path-dependent tensors: x * sigmoid(x) written as a product, a GLU, a
    quotient, an einsum and a bmm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8 + 4 + 8 + 8, 4)

    def forward(self, x):
        h = F.relu(self.conv(x))  # (n, 8, H, W)
        swish = (h * torch.sigmoid(h)).mean((2, 3))
        glu = F.glu(h.mean((2, 3)), dim=1)
        g = self.conv(x).mean((2, 3))
        quotient = g / (1.5 + torch.tanh(g))
        flat = h.flatten(2)  # (n, 8, HW)
        gram = torch.einsum("ncp,ndp->ncd", flat, flat) / flat.shape[-1]
        mixed = torch.bmm(gram, g.unsqueeze(2)).squeeze(2)
        return self.head(torch.cat([swish, glu, quotient, mixed], 1))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc(pool(x))) in a ReLU CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean((2, 3))))))
        return self.head((h * gate[:, :, None, None]).mean((2, 3)))


class Selections(nn.Module):
    """max_pool2d, adaptive_max_pool2d, max along a dim, amax, maximum and min."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 + 6 * 4 + 12 + 6 + 6 + 6, 4)

    def forward(self, x):
        h = self.conv(x)
        pooled = F.max_pool2d(torch.relu(h), 3, stride=2, padding=1)  # (n, 6, 6, 6)
        g = self.conv2(pooled)
        adaptive = F.adaptive_max_pool2d(g, 2).flatten(1)
        by_dim = torch.max(g, dim=1).values.flatten(2).mean(2)  # (n, 6)
        amax = torch.amax(h, dim=(2, 3))
        both = torch.maximum(h, -h.flip(1)).mean((2, 3))
        least = h.min(dim=3).values.mean(2)
        return self.head(torch.cat([pooled.mean((2, 3)).repeat(1, 4), adaptive,
                                    by_dim.repeat(1, 2), amax, both, least], 1))


class Norms(nn.Module):
    """GroupNorm, InstanceNorm, LayerNorm and RMSNorm of a convolution, each followed by ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.ln = nn.LayerNorm(8)
        self.rms = nn.RMSNorm(8)
        self.head = nn.Linear(32, 4)
        with torch.no_grad():
            for m in (self.gn, self.inorm, self.ln, self.rms):
                m.weight.uniform_(0.5, 1.5)
            for m in (self.gn, self.inorm, self.ln):
                m.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        h = self.conv(x - 0.5)  # normalised pixels, as real networks take them
        a = torch.relu(self.gn(h)).mean((2, 3))
        b = torch.relu(self.inorm(h)).mean((2, 3))
        t = h.permute(0, 2, 3, 1)  # channels last
        c = torch.relu(self.ln(t)).mean((1, 2))
        d = torch.relu(self.rms(t)).mean((1, 2))
        return self.head(torch.cat([a, b, c, d], 1))


class Attention(nn.Module):
    """Token attention four ways: by hand (q @ k^T, softmax, @ v), scaled_dot_product_attention
    (with a causal mask), nn.MultiheadAttention (sequence first, with a key padding mask), and
    Swin's shifted windows (torch.roll, a mask built from ``x.new_zeros`` and masked_fill)."""

    def __init__(self, kind: str = "hand") -> None:
        super().__init__()
        self.kind = kind
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.qkv = nn.Linear(8, 24)
        self.mha = nn.MultiheadAttention(8, 2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        t = torch.relu(self.embed(x)).flatten(2).transpose(1, 2)  # (n, 9, 8)
        if self.kind == "mha":
            s = t.transpose(0, 1)  # (9, n, 8)
            pad = torch.zeros(t.shape[0], t.shape[1], dtype=torch.bool)
            pad[:, -2:] = True
            out, _ = self.mha(s, s, s, key_padding_mask=pad)
            out = out.transpose(0, 1)
        elif self.kind == "windows":
            s = torch.roll(t, shifts=-2, dims=1)
            q, k, v = self.qkv(s).view(t.shape[0], t.shape[1], 3, 8).unbind(2)
            group = t.new_zeros(t.shape[1])
            group[5:] = 1.0
            mask = group[:, None] - group[None, :]
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
            w = torch.softmax(q @ k.transpose(-2, -1) / 2.0 + mask, dim=-1)
            out = torch.roll(w @ v, shifts=2, dims=1)
        else:
            q, k, v = self.qkv(t).view(t.shape[0], t.shape[1], 2, 3, 4).permute(3, 0, 2, 1, 4)
            if self.kind == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                w = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)
                out = w @ v
            out = out.transpose(1, 2).reshape(t.shape)
        return self.head(torch.relu(out + t).mean(1))


# The architectures method="secant" used to refuse.


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = _bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = _bn(c)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(h)) + x)


class ResNetStem(nn.Module):
    """ResNet-18's stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), a basic block, the head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), _bn(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.block = BasicBlock(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


class MobileNetV3Block(nn.Module):
    """A MobileNetV3 inverted residual: 1x1 expand, hard-swish, depthwise 3x3, squeeze-excite
    with a hard-sigmoid gate, 1x1 project, residual; hard-swish stem and head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), _bn(8),
                                  nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), _bn(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), _bn(16),
                                nn.Hardswish())
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), _bn(8))
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Hardswish())
        self.fc = nn.Linear(16, 5)
        with torch.no_grad():
            # Pre-activations of a few units, as in a trained network, so that the path crosses
            # hard-swish's kinks at -3 and 3 (inside them it is a polynomial).
            self.stem[0].weight.mul_(6.0)
            self.expand[0].weight.mul_(6.0)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(self.expand(x))
        s = F.adaptive_avg_pool2d(h, 1)
        gate = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        x = x + self.project(h * gate)
        return self.fc(self.head(x).mean((2, 3)))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as ConvNeXt's downsampling layers."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt: a 2x2/2 stem with LayerNorm, then depthwise 7x7, LayerNorm (channels last),
    Linear, GELU, Linear, layer scale, residual; a LayerNorm head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, stride=2), LayerNorm2d(8))
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.pw1 = nn.Linear(8, 32)
        self.pw2 = nn.Linear(32, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.head_norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        x = x + (self.gamma * h).permute(0, 3, 1, 2)
        return self.fc(self.head_norm(x.mean((2, 3))))


class TinyViT(nn.Module):
    """A ViT block: 4x4 patches, a class token, position embeddings, pre-norm attention
    (nn.MultiheadAttention, batch first, as torchvision's ViT) and a GELU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 16) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 10, 16) * 0.2)
        self.ln1 = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.ln2 = nn.LayerNorm(16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        h = self.ln1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.mlp(self.ln2(t))
        return self.fc(self.ln(t[:, 0]))


def softmax_sequential() -> nn.Sequential:
    """A tutorial model: convolutions and ReLU, ending in nn.Softmax (outputs probabilities)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 5), nn.Softmax(dim=1))


OP_MODELS = {
    "elementwise": Smooth, "softmax": SoftmaxInside, "products": Products,
    "squeeze_excite": SqueezeExcite, "selections": Selections, "norms": Norms,
    "attention": Attention, "sdpa": lambda: Attention("sdpa"), "mha": lambda: Attention("mha"),
    "windows": lambda: Attention("windows"),
}
REFUSED_MODELS = {
    "resnet_stem": ResNetStem, "mobilenetv3_block": MobileNetV3Block,
    "convnext_block": ConvNeXtBlock, "tiny_vit": TinyViT, "softmax_sequential": softmax_sequential,
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    factory = {**OP_MODELS, **REFUSED_MODELS}[name]
    return factory().double().eval()  # type: ignore[operator]


def photos(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 3, 12, 12))


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def reference(model, x, **kw):
    return igkit.integrated_gradients(model, x, method="gauss_legendre", steps=2048, **kw)


def gauss_legendre(model, x, steps: int, **kw):
    with warnings.catch_warnings():  # a coarse rule misses completeness on purpose
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        return igkit.integrated_gradients(model, x, method="gauss_legendre", steps=steps, **kw)


def secant_residual(monkeypatch, model, x, steps: int, **kw):
    """The result, and the summed |completeness residual| of every piece relative to the summed
    |F(x)| + |F(x')| (each piece complete to rounding: about 1e-15)."""
    runs = []

    class Recording(strategies.SecantRun):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            runs.append(self)

    monkeypatch.setattr(strategies, "SecantRun", Recording)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning, nothing missed
        # Small logits may all lie in [0, 1], which output="softmax" questions.
        warnings.filterwarnings("ignore", message="every output of the model lies in")
        res = igkit.integrated_gradients(model, x, method="secant", steps=steps, **kw)
    scale = float(np.abs(res.score).sum() + np.abs(res.baseline_score).sum())
    return res, runs[0].residual / scale


# --- (a) exact rules: every piece complete to rounding -----------------------------------------


@pytest.mark.parametrize("name", [*OP_MODELS, *REFUSED_MODELS])
def test_every_piece_is_complete_to_rounding(monkeypatch, name):
    model = build(name)
    x = photos()
    for steps in (1, 5):
        res, residual = secant_residual(monkeypatch, model, x, steps, baseline="black")
        assert residual < 1e-10, (steps, residual)
        assert np.all(res.relative_error < 1e-10), res.relative_error
    # Through a softmax on the output too, and from a baseline that is not zero.
    res, residual = secant_residual(monkeypatch, model, x, 3, baseline="uniform",
                                    output="raw" if name == "softmax_sequential" else "softmax")
    assert residual < 1e-10


def test_each_rule_is_exact_on_its_own_analytic_piece():
    # u and v move linearly from x' to x. IG of u * v, of max(u, v) and of 1 / v has a closed
    # form, and one secant piece (or seven) gives it to rounding.
    w = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])

    def model(op):
        def f(x):
            u, v = (x @ torch.as_tensor(w.T, dtype=x.dtype)).unbind(1)
            return op(u, v)[:, None]
        return f

    def run(op, x, base):
        return [igkit.integrated_gradients(model(op), x, baseline=base, method="secant",
                                           steps=n).attributions for n in (1, 7)]

    x, base = np.array([[0.2, 0.5, -1.0]]), np.array([[1.0, -1.0, 0.0]])
    d = x - base
    (ua, va), (ub, vb) = (base @ w.T)[0], (x @ w.T)[0]
    # u * v: the gradient v w_u + u w_v averages to mean(v) w_u + mean(u) w_v.
    exact = d * (0.5 * (va + vb) * w[0] + 0.5 * (ua + ub) * w[1])
    for got in run(torch.mul, x, base):
        np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-14)
    # max(u, v): u wins at x', v at x, and their lines cross at t*: the gradient is w_u for
    # t* of the path and w_v for the rest.
    assert ua > va and vb > ub
    t = (ua - va) / ((vb - va) - (ub - ua))
    exact = d * (t * w[0] + (1 - t) * w[1])
    for got in run(torch.maximum, x, base):
        np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-14)
    # 1 / v (v > 0 throughout): the mean of -w_v / v^2 along the line is -w_v / (v_a v_b).
    base = np.array([[0.5, 1.0, 0.2]])
    d = x - base
    va, vb = (base @ w.T)[0, 1], (x @ w.T)[0, 1]
    assert va > 0 and vb > 0
    exact = d * (-w[1] / (va * vb))
    for got in run(lambda u, v: 1.0 / v, x, base):
        np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-14)


# --- (b) faster than Gauss-Legendre at equal evaluations ---------------------------------------


@pytest.mark.parametrize("name", list(OP_MODELS))
def test_converges_faster_than_gauss_legendre_at_equal_evaluations(name):
    model = build(name)
    x = photos()
    ref = reference(model, x, baseline="black")
    errors = []
    for steps, share in ((8, 1.0), (24, 0.5)):
        sec = igkit.integrated_gradients(model, x, method="secant", steps=steps, baseline="black")
        gl = gauss_legendre(model, x, int(sec.evaluations.max()), baseline="black")
        assert np.all(sec.evaluations == gl.evaluations)
        e_sec, e_gl = rel(sec.attributions, ref.attributions), rel(gl.attributions,
                                                                   ref.attributions)
        errors.append(e_sec)
        # Most classes are exact where each unit's input moves linearly, and end near the
        # reference's own error (~2e-4) at 8 pieces; "selections" nests maxima over inputs that
        # bend inside a piece (a convolution of a max-pool), where its gain is smaller.
        assert e_sec < share * e_gl, (steps, e_sec, e_gl)
    assert errors[1] < errors[0] or errors[1] < 1e-3  # converging (to the reference's own error)


# --- (c) the architectures once refused --------------------------------------------------------


@pytest.mark.parametrize("name", list(REFUSED_MODELS))
def test_models_once_refused_run_within_1e3_of_the_reference(name):
    model = build(name)
    x = photos()
    ref = reference(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = igkit.integrated_gradients(model, x, method="secant", steps=64)
    assert np.all(res.relative_error < 1e-10)
    for i in range(x.shape[0]):
        assert rel(res.attributions[i], ref.attributions[i]) < 1e-3


def test_multi_head_attention_keeps_the_weights_it_returns():
    # need_weights=True returns the attention weights averaged over heads, as torch does.
    model = build("tiny_vit")
    x = torch.as_tensor(photos(3))
    from igkit.backends.torch_secant import SecantMode

    t = model.patch(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls.expand(3, -1, -1), t], 1) + model.pos
    xin = t.detach().requires_grad_(True)
    with torch.no_grad():
        want_out, want_w = model.attn(xin, xin, xin)
    with SecantMode():
        out, w = model.attn(xin, xin, xin)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, want_w, rtol=1e-12, atol=1e-12)


def test_only_tensors_computed_from_the_input_values_follow_the_path():
    # A tensor built from the input's shape (x.new_zeros, as Swin builds its mask) or detached
    # from it is a constant; products with a parameter are linear, with no rule or row pairing.
    from igkit.backends.torch_secant import SecantMode

    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    x = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    with SecantMode() as mode:
        h = torch.relu(x) * w
        for fresh in (x.new_zeros(3, 3), torch.zeros_like(x), x.detach(), h.detach()):
            assert mode._axis(fresh) is None
        assert mode._axis(h) == 0 and mode._axis(h.t()) == 1
    assert len(mode.after) == 1  # only the ReLU needed its inputs at the piece's start


class InPlace(nn.Module):
    """In-place operations around the rules: a norm's output scaled and rectified in place (the
    norm's rule keeps its own copies), the residual stream added to in place."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.fc(x)
        y = self.ln(h)
        y *= torch.sigmoid(h)
        y.relu_()
        h = h * 1.0
        h += y
        return self.out(h)


def test_in_place_operations_keep_every_piece_complete(monkeypatch):
    torch.manual_seed(0)
    model = InPlace().double()
    x = np.random.default_rng(0).normal(size=(2, 6))
    res, residual = secant_residual(monkeypatch, model, x, 5)
    assert residual < 1e-10
    ref = reference(model, x)
    assert rel(igkit.integrated_gradients(model, x, method="secant", steps=64).attributions,
               ref.attributions) < 1e-3
