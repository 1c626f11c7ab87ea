"""The PyTorch frontend (``mirage.torch``): torch.compile backend and ``optimize`` on small modules.

Every module is compiled both ways, checked against eager (fp32, rtol 1e-4) and its report is
checked for which subgraphs were captured and why anything fell back. Searches are tiny (one
kernel, a few seconds) and share one cache, so the two paths search each subgraph once.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mirage.torch as mt  # noqa: E402
from mirage.torch.report import EAGER, INTERPRETER, Report  # noqa: E402

H = 64


class RMSNormLinear(nn.Module):
    def __init__(self, eps: float = 1e-6, hidden: int = H, out: int = 32):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(hidden) + 0.5)
        self.proj = nn.Linear(hidden, out, bias=False)
        self.eps = eps

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.gain
        return self.proj(h)


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(H, 96, bias=False)
        self.up = nn.Linear(H, 96, bias=False)
        self.down = nn.Linear(96, H, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class CumsumInMiddle(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(H, 32, bias=False)

    def forward(self, x):
        y = torch.exp(self.proj(x) * 0.1)
        z = torch.cumsum(y, dim=-1)  # no builder op: the graph is cut around it
        return F.relu(z - 1.0) * z


class ScalarMul(nn.Module):
    def forward(self, x):
        return torch.exp(x * 0.125) + 1.0


class DecoderBlock(nn.Module):
    """RMSNorm (gain, eps), QKV projections, softmax attention of q over a small cache."""

    def __init__(self, cache: int = 8):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(H) + 0.5)
        self.q = nn.Linear(H, H, bias=False)
        self.k = nn.Linear(H, H, bias=False)
        self.v = nn.Linear(H, H, bias=False)
        self.register_buffer("k_cache", torch.randn(cache, H))
        self.register_buffer("v_cache", torch.randn(cache, H))

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.gain
        q, k, v = self.q(h), self.k(h), self.v(h)
        scores = torch.exp((q @ self.k_cache.transpose(0, 1)) * H ** -0.5)
        attn = scores / scores.sum(-1, keepdim=True)
        return attn @ self.v_cache, k, v


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    return dict(max_kernel_ops=1, max_block_ops=5, time_budget_s=1.0, num_workers=1,
                cache_dir=str(tmp_path_factory.mktemp("mirage-cache")))


@pytest.fixture(autouse=True)
def _fresh_dynamo(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch._dynamo.reset()
    mt.reset()
    yield
    torch._dynamo.reset()


def _close(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def _both(module, x, options):
    """(report of torch.compile(backend="mirage"), report of optimize), outputs checked."""
    module = module.eval()
    with torch.no_grad():
        want = module(x)
        compiled = torch.compile(module, backend="mirage", dynamic=False, options=options)
        _close(compiled(x), want)
    named = mt.explain()
    torch._dynamo.reset()
    opt = mt.optimize(module, (x,), **options)
    _close(opt(x), want)
    assert len(opt.mirage_report.compiles) == 1
    return named, opt.mirage_report


def _all_eager_without_gpu(report: Report):
    for sub in report.subgraphs:
        assert sub.decision == EAGER
        assert sub.reason.startswith("no GPU")


def test_rmsnorm_linear(options):
    for report in _both(RMSNormLinear(), torch.randn(4, H), options):
        (sub,) = report.subgraphs  # the whole graph is one subgraph
        # x * rsqrt(mean(x^2) + eps) is folded into one rms_norm op before partitioning
        assert sub.ops == ["F.rms_norm", "mul", "F.linear (transpose, matmul)"]
        assert sub.input_shapes == [[4, H], [H], [32, H]] and sub.output_shapes == [[4, 32]]
        assert sub.kernels.startswith("3 inputs -> 1 output")  # what the search found depends
        assert not report.last.left_out
        _all_eager_without_gpu(report)


def test_swiglu(options):
    for report in _both(SwiGLU(), torch.randn(4, H), options):
        (sub,) = report.subgraphs
        assert sub.ops.count("F.linear (transpose, matmul)") == 3 and "F.silu" in sub.ops
        assert sub.output_shapes == [[4, H]]
        _all_eager_without_gpu(report)


def test_unsupported_op_splits_the_graph(options):
    for report in _both(CumsumInMiddle(), torch.randn(4, H), options):
        before, after = report.subgraphs
        assert before.ops == ["F.linear (transpose, matmul)", "mul", "exp"]
        assert after.ops == ["sub", "F.relu", "mul"]
        assert after.input_shapes == [[4, 32]]
        (left,) = report.last.left_out
        assert left["op"] == "cumsum" and "no mapping" in left["reason"]
        assert "1 piece(s) outside the subgraphs run with eager" in report.last.rest


def test_python_scalar_multiply(options):
    for report in _both(ScalarMul(), torch.randn(4, H), options):
        (sub,) = report.subgraphs
        assert sub.ops == ["mul", "exp", "add"]
        assert "customized" in sub.kernels or "mul_scalar" in sub.kernels
        _all_eager_without_gpu(report)


def test_decoder_block_several_outputs(options):
    for report in _both(DecoderBlock(), torch.randn(4, H), options):
        (sub,) = report.subgraphs
        assert len(sub.output_shapes) == 3 and sub.output_shapes[0] == [4, H]
        assert sub.ops[:2] == ["F.rms_norm", "mul"]
        assert ".transpose" in sub.ops and ".sum" in sub.ops and "exp" in sub.ops
        assert sub.input_shapes[-2:] == [[8, H], [8, H]]  # the cache buffers
        _all_eager_without_gpu(report)


def test_new_batch_size_recompiles(options):
    module = RMSNormLinear().eval()
    opt = mt.optimize(module, (torch.randn(4, H),), **options)
    x = torch.randn(8, H)
    with torch.no_grad():
        _close(opt(x), module(x))
    keys = [c.key for c in opt.mirage_report.compiles]
    assert len(set(keys)) == 2 and set(opt.programs) == set(keys)
    assert keys[1].startswith("(8, 64):float32")
    with torch.no_grad():
        _close(opt(torch.ones(4, H)), module(torch.ones(4, H)))  # a seen key: no compile
    assert len(opt.mirage_report.compiles) == 2
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="mirage", dynamic=False, options=options)
    with torch.no_grad():
        compiled(torch.randn(4, H))
        compiled(torch.randn(8, H))
    assert [c.key.split(":")[0] for c in mt.explain().compiles] == ["(4, 64)", "(8, 64)"]


def test_report_table_and_json_round_trip(options):
    opt = mt.optimize(CumsumInMiddle().eval(), (torch.randn(4, H),), **options)
    report = opt.mirage_report
    text = str(report)
    for word in ("decision", "F.linear (transpose, matmul)", "cumsum", "no GPU", "floor"):
        assert word in text
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.subgraphs[1].ops == ["sub", "F.relu", "mul"]
    assert again.last.left_out[0]["op"] == "cumsum"


def test_autograd_graph_falls_back_whole(options):
    module = ScalarMul()
    x = torch.randn(4, H, requires_grad=True)
    compiled = torch.compile(module, backend="mirage", dynamic=False, options=options)
    y = compiled(x)  # grad mode on: inference-only mirage leaves the graph alone
    assert y.requires_grad
    _close(y.detach(), module(x).detach())
    (rec,) = mt.explain().compiles
    assert "autograd" in rec.whole_graph_fallback and not rec.subgraphs


def test_interpreter_runs_the_mugraph(options, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    module = ScalarMul()
    x = torch.randn(4, H)
    opt = mt.optimize(module, (x,), **options)
    _close(opt(x), module(x))
    (sub,) = opt.mirage_report.subgraphs
    assert sub.decision == INTERPRETER, sub.reason


def test_unknown_option_is_refused():
    with pytest.raises(Exception, match="unknown mirage.torch option"):
        mt.Backend(time_budget=3)


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [H, 4096])
def test_gpu_keeps_the_faster(tmp_path, hidden):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    module = RMSNormLinear(hidden=hidden, out=hidden).cuda().half().eval()
    x = torch.randn(16, hidden, device="cuda", dtype=torch.float16)
    opt = mt.optimize(module, (x,), max_kernel_ops=1, max_block_ops=5, time_budget_s=20,
                      cache_dir=str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(opt(x), module(x), rtol=2e-2, atol=2e-2)
    print(opt.mirage_report)
    (sub,) = opt.mirage_report.subgraphs
    assert sub.decision in ("mirage", "inductor"), sub.reason
    if sub.mirage_us is not None:
        assert sub.inductor_us is not None and sub.timing_method
        assert (sub.decision == "mirage") == (sub.mirage_us < sub.inductor_us)


def test_optimize_a_plain_function(options):
    def fn(x, w):
        return F.gelu(x @ w) / 2.0

    x, w = torch.randn(4, H), torch.randn(H, 16)
    opt = mt.optimize(fn, (x, w), **options)
    _close(opt(x, w), fn(x, w))
    (sub,) = opt.mirage_report.subgraphs
    assert sub.ops == ["matmul", "F.gelu", "truediv"]
    assert "gelu_erf" in sub.kernels or "customized" in sub.kernels  # torch's exact gelu


def test_rest_of_the_graph_through_inductor(options):
    module = CumsumInMiddle().eval()
    x = torch.randn(4, H)
    opt = mt.optimize(module, (x,), **{**options, "fallback": "inductor"})
    with torch.no_grad():
        _close(opt(x), module(x))
    rest = opt.mirage_report.last.rest
    assert rest.startswith("1 piece(s) outside the subgraphs run with inductor")
    assert [s.decision for s in opt.mirage_report.subgraphs] == [EAGER, EAGER]  # no GPU
