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

    def to_json(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int | None = None,
    seconds: float = MEASURE_SECONDS,
    bursts: int = BURSTS,
) -> MatmulPeak:
    """Best GFLOP/s of (size × size) @ (size × size) products in ``dtype`` on ``device``."""
    target = torch.device(device)
    if size is None:
        size = GPU_SIZE if target.type == "cuda" else CPU_SIZES.get(dtype, 2048)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(target, dtype)
    b = torch.randn(size, size, generator=generator).to(target, dtype)
    flops = 2.0 * size**3
    with torch.inference_mode():
        out = torch.mm(a, b)  # warm-up: allocations, kernel selection, clocks
        _sync(target)
        began = time.perf_counter()
        out = torch.mm(a, b, out=out)
        _sync(target)
        single = max(time.perf_counter() - began, 1e-6)
        per_burst = max(1, int(seconds / bursts / single))
        rates = []
        for _ in range(bursts):
            began = time.perf_counter()
            for _ in range(per_burst):
                torch.mm(a, b, out=out)
            _sync(target)
            rates.append(flops * per_burst / (time.perf_counter() - began) / 1e9)
    rates.sort()
    return MatmulPeak(
        device=str(target),
        dtype=str(dtype).removeprefix("torch."),
        size=size,
        gflops=round(rates[-1], 2),
        median_gflops=round(rates[len(rates) // 2], 2),
        threads=torch.get_num_threads(),
    )
