#!/usr/bin/python3
"""parity_forward.py - `lstm forward` against PyTorch on random configurations
that the committed fixtures do not cover.

    /usr/bin/python3 tests/parity_forward.py [--cases N] [--seed S] [--lstm ./lstm]

For each case it builds a random nn.LSTM (1-3 layers, bidirectional or not,
projection or not, bias or not), saves its state_dict under a prefix next to
an unrelated tensor (as a whole model's file would be), writes random inputs
(with or without h0/c0, lengths, batch_first), runs `lstm forward`, and
compares output, h_n and c_n with PyTorch's float64 result on the same
float32 values. The error of a tensor is max|got - want| / max|want| (the
largest error relative to the tensor's scale); the script prints the worst
per case for `lstm forward` and, for scale, for PyTorch's own float32 run,
and exits 1 if ours exceeds --tol (1e-5) anywhere.
Needs Debian's python3-torch (the python3 first on PATH may lack it).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import st_read, st_write  # noqa: E402


def run_case(rng, lstm_bin, tmp, idx):
    I = int(rng.integers(1, 41))
    H = int(rng.integers(2, 71))
    L = int(rng.integers(1, 4))
    bidir = bool(rng.integers(0, 2))
    proj = int(rng.integers(1, H)) if rng.random() < 0.3 else 0
    bias = bool(rng.random() < 0.8)
    bf = bool(rng.integers(0, 2))
    T = int(rng.integers(1, 13))
    B = int(rng.integers(1, 10))
    use_h0 = bool(rng.integers(0, 2))
    use_len = bool(rng.integers(0, 2))
    torch.manual_seed(int(rng.integers(0, 2**31)))
    m = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bidir, proj_size=proj)
    m = m.double()
    with torch.no_grad():
        for p in m.parameters():  # float32-representable weights
            p.copy_(p.float().double())
    D = 2 if bidir else 1
    Ho = proj or H
    x = torch.randn((B, T, I) if bf else (T, B, I)).float().double()
    h0 = torch.randn(L * D, B, Ho).float().double()
    c0 = torch.randn(L * D, B, H).float().double()
    lengths = torch.tensor(rng.integers(1, T + 1, size=B), dtype=torch.int64)
    lengths[int(rng.integers(0, B))] = T
    state = (h0, c0) if use_h0 else None
    def forward(m, x, state):
        with torch.no_grad():
            if use_len:
                packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
                out, (hn, cn) = m(packed, state)
                out, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
            else:
                out, (hn, cn) = m(x, state)
        return out, hn, cn

    out, hn, cn = forward(m, x, state)
    m32 = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bidir, proj_size=proj)
    m32.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    t32 = forward(m32, x.float(), tuple(s.float() for s in state) if state else None)

    model = {"rnn." + k: ("F32", v) for k, v in m.state_dict().items()}
    model["embedding.weight"] = ("F32", torch.randn(7, I))
    inputs = {"input": ("F32", x)}
    if use_h0:
        inputs["h0"] = ("F32", h0)
        inputs["c0"] = ("F32", c0)
    if use_len:
        inputs["lengths"] = ("I64" if rng.random() < 0.5 else "I32", lengths)
    mp, ip, op = (os.path.join(tmp, "%s%d.safetensors" % (n, idx)) for n in ("m", "i", "o"))
    st_write(mp, model, {"format": "pt"})
    st_write(ip, inputs, {})
    cmd = [lstm_bin, "forward", mp, ip, op] + (["--batch-first"] if bf else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    desc = ("I=%d H=%d L=%d D=%d P=%d bias=%d bf=%d T=%d B=%d h0=%d len=%d"
            % (I, H, L, D, proj, bias, bf, T, B, use_h0, use_len))
    if r.returncode != 0:
        return desc, float("inf"), 0.0, r.stderr.strip()
    got, _ = st_read(op)
    worst = worst32 = 0.0
    for k, (name, want) in enumerate((("output", out), ("h_n", hn), ("c_n", cn))):
        g = torch.from_numpy(got[name].copy()).double()
        if tuple(g.shape) != tuple(want.shape):
            return desc, float("inf"), 0.0, "%s shape %s, want %s" % (name, g.shape, want.shape)
        scale = want.abs().max().item() or 1.0
        worst = max(worst, (g - want).abs().max().item() / scale)
        worst32 = max(worst32, (t32[k].double() - want).abs().max().item() / scale)
    return desc, worst, worst32, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--lstm", default="./lstm")
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    import numpy as np
    rng = np.random.default_rng(a.seed)
    torch.set_num_threads(1)
    worst_all = worst_torch = 0.0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.cases):
            desc, worst, worst32, msg = run_case(rng, a.lstm, tmp, i)
            bad = not (worst <= a.tol)
            failed += bad
            worst_all = max(worst_all, worst)
            worst_torch = max(worst_torch, worst32)
            print("%s case %2d  %-58s lstm %.1e  torch-f32 %.1e %s"
                  % ("FAIL" if bad else "ok  ", i, desc, worst, worst32, msg))
    print("%d cases: worst relative error of lstm forward %.2e, of PyTorch float32 %.2e "
          "(tolerance %.0e)" % (a.cases, worst_all, worst_torch, a.tol))
    print("%d passed, %d failed" % (a.cases - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
