"""The machine's dense matmul peak for a dtype, measured in the same run as the benchmarks.

MFU (model FLOP utilisation) divides a case's achieved GFLOP/s by this number, so both must come from
the same machine under the same load: on a shared 2-core machine the peak moves with its neighbours.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

#: Square matrix edge per device: large enough to run at full speed, small enough to finish in < 0.1 s
#: (CPU fp32: 17 GFLOP at 2048²; bf16 with matrix units runs ~6× faster, so it gets a bigger matrix).
CPU_SIZES = {torch.float32: 2048, torch.bfloat16: 4096, torch.float16: 2048}
GPU_SIZE = 8192
#: Seconds of timed multiplications per measurement (after one untimed warm-up product).
MEASURE_SECONDS = 1.0
#: The best of this many timed bursts is the peak (others share the machine; the best burst is the least
#: disturbed).
BURSTS = 5


@dataclass(frozen=True)
class MatmulPeak:
    device: str
    dtype: str
    size: int
    gflops: float  # best burst, 2·n³ FLOPs per product
    median_gflops: float
    threads: int
    kernel: str = "torch.mm"  # the fastest product kernel (see _candidate_products)

    def to_json(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _candidate_products(a: torch.Tensor, b: torch.Tensor) -> dict[str, object]:
    """The product kernels this build can use for a @ bᵀ-sized work: torch.mm always, plus oneDNN's
    linear for CPU float32 (the engine's own route there; MKL's AVX2 path runs at ~half speed on AMD)."""
    products = {"torch.mm": lambda out: torch.mm(a, b, out=out)}
    from engine.runtime.onednn_linear import onednn_linear, onednn_linear_available

    if a.device.type == "cpu" and a.dtype == torch.float32 and onednn_linear_available():
        products["onednn-linear"] = lambda out: onednn_linear(a, b, None)
    return products


def _burst_rates(
    product, out, flops: float, target: torch.device, seconds: float, bursts: int
) -> list[float]:
    product(out)  # warm-up: allocations, kernel selection, clocks
    _sync(target)
    began = time.perf_counter()
    product(out)
    _sync(target)
    single = max(time.perf_counter() - began, 1e-6)
    per_burst = max(1, int(seconds / bursts / single))
    rates = []
    for _ in range(bursts):
        began = time.perf_counter()
        for _ in range(per_burst):
            product(out)
        _sync(target)
        rates.append(flops * per_burst / (time.perf_counter() - began) / 1e9)
    return sorted(rates)


def measure_matmul_peak(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int | None = None,
    seconds: float = MEASURE_SECONDS,
    bursts: int = BURSTS,
) -> MatmulPeak:
    """Best GFLOP/s of (size × size) · (size × size) products in ``dtype`` on ``device``, over every
    product kernel the engine may use there (``kernel`` names the fastest)."""
    target = torch.device(device)
    if size is None:
        size = GPU_SIZE if target.type == "cuda" else CPU_SIZES.get(dtype, 2048)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(target, dtype)
    b = torch.randn(size, size, generator=generator).to(target, dtype)
    flops = 2.0 * size**3
    best: tuple[list[float], str] | None = None
    with torch.inference_mode():
        out = torch.empty(size, size, device=target, dtype=dtype)
        for kernel, product in _candidate_products(a, b).items():
            rates = _burst_rates(product, out, flops, target, seconds, bursts)
            if best is None or rates[-1] > best[0][-1]:
                best = (rates, kernel)
    rates, kernel = best
    return MatmulPeak(
        device=str(target),
        dtype=str(dtype).removeprefix("torch."),
        size=size,
        gflops=round(rates[-1], 2),
        median_gflops=round(rates[len(rates) // 2], 2),
        threads=torch.get_num_threads(),
        kernel=kernel,
    )
