#!/usr/bin/python3
"""torch_lstm.py - times torch.nn.LSTM (PyTorch 1.13, CPU) with the options and
result line of `lstm bench`, so bench/compare.sh can set the two side by side.

    bench/torch_lstm.py --mode train --input 512 --hidden 512 --batch 64 --steps 25 --json

Tuned as a careful user would run it: OMP_WAIT_POLICY=PASSIVE (PyTorch's OpenMP
threads otherwise spin against OpenBLAS's own threads and run 2.5-3x slower) and
glibc's malloc told to keep freed memory instead of returning it to the kernel on
every iteration (mmap and trim thresholds, top pad). Both must be in the environment
before the process starts, so the script re-executes itself with them when they are
missing; a value already set (e.g. OMP_WAIT_POLICY=ACTIVE) is kept, to compare.

--bf16: the module and its input converted to bfloat16 (`lstm.to(torch.bfloat16)`),
the one way to run nn.LSTM in bfloat16 on a CPU here: PyTorch 1.13's CPU autocast
leaves nn.LSTM in float. Its weights and gradients are then bfloat16 too (lstm's
--precision bf16 keeps both in float and rounds only the products' operands).

--int8: torch.ao.quantization.quantize_dynamic(..., {nn.LSTM}, dtype=torch.qint8),
PyTorch's dynamic quantization (int8 weights, activations quantized as they come
with a scale and zero point per tensor), on the quantized engine this build has
(Debian's 1.13: onednn; fbgemm is not built in). infer and stream only. The module
is wrapped in a container, as quantize_dynamic swaps children only (a bare LSTM
comes back in float): the script checks that the LSTM was swapped.
"""
import os
import sys

TUNED_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc's largest allowed value
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}

if any(k not in os.environ for k in TUNED_ENV):
    for k, v in TUNED_ENV.items():
        os.environ.setdefault(k, v)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def forward_flops(I, H, L, D, P, T, B):
    """Multiply-adds times two of one forward over T steps, as `lstm bench` counts."""
    Ho = P or H
    f = 0.0
    for layer in range(L):
        In = I if layer == 0 else D * Ho
        f += D * (2.0 * T * B * 4 * H * (In + Ho) + (2.0 * T * B * Ho * H if P else 0))
    return f


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description="Times torch.nn.LSTM as `lstm bench` times lstm.")
    ap.add_argument("--mode", choices=["train", "infer", "stream"], default="train")
    ap.add_argument("--input", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--proj", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="module and input in bfloat16")
    ap.add_argument("--int8", action="store_true", help="quantize_dynamic (infer, stream)")
    a = ap.parse_args()
    if a.int8 and (a.bf16 or a.mode == "train"):
        ap.error("--int8 is for infer and stream, without --bf16")
    if min(a.input, a.hidden, a.layers, a.batch, a.steps, a.repeat, a.threads) < 1 or a.proj < 0:
        ap.error("sizes, --steps, --repeat and --threads must be >= 1")
    if a.mode == "stream" and a.bidirectional:
        ap.error("stream is unidirectional")

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    rss_start = peak_rss_mib()  # torch imported, no model or data yet
    I, H, L, B, T, P = a.input, a.hidden, a.layers, a.batch, a.steps, a.proj
    D, Ho = (2 if a.bidirectional else 1), (P or H)
    lstm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=a.bidirectional, proj_size=P)
    dt = torch.bfloat16 if a.bf16 else torch.float32
    lstm.to(dt)
    if a.int8:
        lstm = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lstm), {torch.nn.LSTM},
                                                      dtype=torch.qint8)[0]
        assert type(lstm).__module__.startswith("torch.ao.nn.quantized"), \
            "quantize_dynamic left the LSTM in float"

    if a.mode == "train":
        x = torch.randn(T, B, I, dtype=dt, requires_grad=True)

        def run():
            lstm.zero_grad(set_to_none=True)
            x.grad = None
            y, _ = lstm(x)
            y.sum().backward()

    elif a.mode == "infer":
        x = torch.randn(T, B, I, dtype=dt)

        def run():
            with torch.inference_mode():
                lstm(x)

    else:
        x = torch.randn(1, B, I, dtype=dt)
        state = [torch.zeros(L, B, Ho, dtype=dt), torch.zeros(L, B, H, dtype=dt)]

        def run():  # T single steps, the state carried
            with torch.inference_mode():
                h, c = state
                for _ in range(T):
                    _, (h, c) = lstm(x, (h, c))
                state[:] = h, c

    rss0 = peak_rss_mib()
    times = []
    for it in range(-2, a.repeat):  # two warm-up runs
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        if it >= 0:
            times.append(dt / T if a.mode == "stream" else dt)
    med = statistics.median(times)
    flops = forward_flops(I, H, L, D, P, 1 if a.mode == "stream" else T, B) * (3 if a.mode == "train" else 1)
    rss = peak_rss_mib()
    print("torch %s%s %s I=%d H=%d L=%d%s%s B=%d T=%d threads=%d: %.3f ms%s, %.1f GFLOP/s, "
          "peak RSS %.1f MiB (%.1f MiB above the start, +%.1f MiB while timed)"
          % (torch.__version__, " bf16" if a.bf16 else " int8" if a.int8 else "", a.mode, I, H, L, " bidirectional" if a.bidirectional else "",
             " proj" if P else "", B, T, torch.get_num_threads(), med * 1e3,
             " per step" if a.mode == "stream" else "", flops / med * 1e-9, rss, rss - rss_start, rss - rss0))
    if a.json:
        print(json.dumps({
            "impl": "torch", "precision": "bf16" if a.bf16 else "int8" if a.int8 else "fp32", "version": torch.__version__, "mode": a.mode, "input": I, "hidden": H,
            "layers": L, "bidirectional": int(a.bidirectional), "proj": P, "batch": B, "steps": T,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "ms": round(med * 1e3, 6), "gflops": round(flops / med * 1e-9, 3),
            "peak_rss_mib": round(rss, 1), "peak_rss_over_start_mib": round(rss - rss_start, 1),
            "peak_rss_growth_mib": round(rss - rss0, 1)},
            separators=(",", ":")))


if __name__ == "__main__":
    main()
