#!/usr/bin/python3
"""parity_int8.py - a quantized `lstm forward` against PyTorch on random
configurations (layers, bidirectional, proj_size, lengths, h0/c0).

    /usr/bin/python3 tests/parity_int8.py [--cases N] [--seed S] [--lstm ./lstm]

For each case it builds a random nn.LSTM, saves its state_dict, runs
`lstm quantize` on it and `lstm forward` on the quantized file, and checks:

1. the file: every weight matrix NAME became NAME.int8 (I8) and NAME.scale
   (F32) following the rule of docs/DESIGN.md (scale = max|row| / 127,
   q = round-half-even(w / scale)), computed here in PyTorch;
2. the scheme: the output equals the int8 scheme computed here in PyTorch
   (each row of x_t, h_{t-1} and of the projection's input quantized as it
   comes, exact integer sums, float32 scaling), to --tol-scheme (1e-3 of
   max|output|): the two differ only in float rounding (sums' order, exp),
   which can move a value across a rounding tie of the next step's
   quantization: one quantum, s_a * scale * |q| <= max|a| max|w| / 127 on
   one term of one pre-activation;
3. float: the output is within the tolerance derived from the quantization
   step of float PyTorch (float64): --tol-float (0.05, relative to
   max|output|). Why 0.05: each product w * a carries at most half a step
   of each operand, |dw| <= max|w_row| / 254 and |da| <= max|a| / 254, so a
   pre-activation over K terms moves by at most about K max|w| max|a| / 127;
   with the K rounding errors independent and of both signs, the sum moves
   by about sqrt(K / 3) of one term's step, i.e. a relative error near
   sqrt(K / 3) / 127 of max|w| max|a|, which is of the order of the
   pre-activation itself over sqrt(K): about 1/127 = 0.8% per product.
   Gates pass it on with gain at most 1; the cell state sums it over the
   steps with the forget gate below 1, and the layers add theirs: a few
   times 0.8% over the depths and lengths here (up to 3 layers, 12 steps).
   0.05 is six such steps' worth; it was set before the run and not moved.
   For scale the script prints PyTorch's own dynamic quantization error
   (torch.ao.quantization.quantize_dynamic, per-tensor activation scales
   with a zero point) on the cases it supports (no proj_size).
Needs Debian's python3-torch (the python3 first on PATH may lack it).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import st_write  # noqa: E402

NP = {"F32": "<f4", "I8": "i1", "I64": "<i8", "I32": "<i4", "F64": "<f8"}


def read_any(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode())
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], np.frombuffer(data[b:e], dtype=NP[v["dtype"]]).reshape(v["shape"]))
    return out, meta


def quantize_rule(w):
    """The file format's rule, in float32: (q int8, scale float32) per row."""
    w = w.float()
    m = w.abs().max(dim=1).values
    s = m / torch.tensor(127.0, dtype=torch.float32)
    safe = torch.where(s == 0, torch.ones_like(s), s)
    q = torch.round(w / safe[:, None]).clamp(-127, 127)  # round half to even
    q[s == 0] = 0
    return q.to(torch.int8), s


def qprod(a, q, s):
    """One row's product under the scheme: a (K) float32, q (N,K), s (N)."""
    a = a.float()
    m = a.abs().max()
    if m == 0:
        return torch.zeros(q.shape[0], dtype=torch.float32)
    inv = torch.tensor(127.0, dtype=torch.float32) / m
    qa = torch.round(a * inv).clamp(-127, 127)
    sa = m / torch.tensor(127.0, dtype=torch.float32)
    acc = (q.double() @ qa.double()).float()  # exact: integers below 2^24
    return acc * (sa * s)


def scheme(qw, sd, L, D, H, P, x, h0, c0, lengths, bf):
    """The int8 LSTM, one sequence at a time. x (T,B,I) time-major float32."""
    T, B, _ = x.shape
    Ho = P or H
    y = torch.zeros(T, B, D * Ho)
    hn = torch.zeros(L * D, B, Ho)
    cn = torch.zeros(L * D, B, H)
    for b in range(B):
        n = int(lengths[b]) if lengths is not None else T
        inp = [x[t, b] for t in range(n)]
        for l in range(L):
            outs = [[None] * n for _ in range(D)]
            for d in range(D):
                sf = "_l%d%s" % (l, "_reverse" if d else "")
                bias = (sd.get("bias_ih" + sf, torch.zeros(4 * H)).float()
                        + sd.get("bias_hh" + sf, torch.zeros(4 * H)).float())
                h = h0[l * D + d, b].float() if h0 is not None else torch.zeros(Ho)
                c = c0[l * D + d, b].float() if c0 is not None else torch.zeros(H)
                for s_ in range(n):
                    t = n - 1 - s_ if d else s_
                    pre = qprod(inp[t], *qw["weight_ih" + sf]) + qprod(h, *qw["weight_hh" + sf])
                    pre = pre + bias
                    i, f, g, o = pre.chunk(4)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    if P:
                        h = qprod(h, *qw["weight_hr" + sf])
                    outs[d][t] = h
                hn[l * D + d, b] = h
                cn[l * D + d, b] = c
            inp = [torch.cat([outs[d][t] for d in range(D)]) for t in range(n)]
        for t in range(n):
            y[t, b] = inp[t]
    if bf:
        y = y.transpose(0, 1)
    return y, hn, cn


def run_case(rng, lstm_bin, tmp, idx):
    I = int(rng.integers(1, 41))
    H = int(rng.integers(2, 71))
    L = int(rng.integers(1, 4))
    bidir = bool(rng.integers(0, 2))
    proj = int(rng.integers(1, H)) if rng.random() < 0.35 else 0
    bias = bool(rng.random() < 0.8)
    bf = bool(rng.integers(0, 2))
    T = int(rng.integers(1, 13))
    B = int(rng.integers(1, 7))
    use_h0 = bool(rng.integers(0, 2))
    use_len = bool(rng.integers(0, 2))
    torch.manual_seed(int(rng.integers(0, 2**31)))
    m = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bidir, proj_size=proj)
    D = 2 if bidir else 1
    Ho = proj or H
    x = torch.randn((B, T, I) if bf else (T, B, I))
    h0 = torch.randn(L * D, B, Ho) * 0.5
    c0 = torch.randn(L * D, B, H) * 0.5
    lengths = torch.tensor(rng.integers(1, T + 1, size=B), dtype=torch.int64)
    lengths[int(rng.integers(0, B))] = T
    state = (h0, c0) if use_h0 else None

    def forward(mod, x, state):
        with torch.no_grad():
            if use_len:
                packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
                out, (hn, cn) = mod(packed, state)
                out, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
            else:
                out, (hn, cn) = mod(x, state)
        return out, hn, cn

    m64 = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bidir,
                        proj_size=proj).double()
    m64.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    want = forward(m64, x.double(), tuple(s.double() for s in state) if state else None)
    tq = None
    if not proj and bias:  # quantize_dynamic swaps children only: wrap the LSTM
        mq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(m), {torch.nn.LSTM},
                                                    dtype=torch.qint8)[0]
        assert not isinstance(mq, torch.nn.LSTM), "quantize_dynamic left a float LSTM"
        tq = forward(mq, x, state)

    sd = m.state_dict()
    model = {"rnn." + k: ("F32", v) for k, v in sd.items()}
    model["embedding.weight"] = ("F32", torch.randn(7, I))
    inputs = {"input": ("F32", x)}
    if use_h0:
        inputs["h0"] = ("F32", h0)
        inputs["c0"] = ("F32", c0)
    if use_len:
        inputs["lengths"] = ("I64", lengths)
    mp, qp, ip, op = (os.path.join(tmp, "%s%d.safetensors" % (n, idx)) for n in "mqio")
    st_write(mp, model, {"format": "pt"})
    st_write(ip, inputs, {})
    desc = ("I=%d H=%d L=%d D=%d P=%d bias=%d bf=%d T=%d B=%d h0=%d len=%d"
            % (I, H, L, D, proj, bias, bf, T, B, use_h0, use_len))
    for cmd in ([lstm_bin, "quantize", mp, qp],
                [lstm_bin, "forward", qp, ip, op] + (["--batch-first"] if bf else [])):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return desc, None, r.stderr.strip()
    qf, meta = read_any(qp)
    if meta.get("lstm.quantization") != "int8-rowwise":
        return desc, None, "no lstm.quantization metadata"
    qw = {}
    for k, v in sd.items():
        if not k.startswith("weight_"):
            if ("rnn." + k) not in qf:
                return desc, None, "missing float tensor rnn." + k
            continue
        if ("rnn." + k) in qf:
            return desc, None, "float rnn.%s still there" % k
        dq, q = qf["rnn.%s.int8" % k]
        ds, s = qf["rnn.%s.scale" % k]
        rq, rs = quantize_rule(v)
        if dq != "I8" or ds != "F32" or not np.array_equal(q, rq.numpy()) \
                or not np.array_equal(s, rs.numpy()):
            return desc, None, "%s does not follow the rule" % k
        qw[k.rsplit("_l", 1)[0] + "_l" + k.rsplit("_l", 1)[1]] = (torch.from_numpy(q.copy()),
                                                                  torch.from_numpy(s.copy()))
    got, _ = read_any(op)
    xt = x.transpose(0, 1) if bf else x
    sch = scheme(qw, sd, L, D, H, proj, xt, h0 if use_h0 else None, c0 if use_h0 else None,
                 lengths if use_len else None, bf)
    errs = {"scheme": 0.0, "float": 0.0, "torch_dynamic": 0.0 if tq else None}
    for k, name in enumerate(("output", "h_n", "c_n")):
        g = torch.from_numpy(got[name][1].copy()).double()
        w = want[k].double()
        scale = w.abs().max().item() or 1.0
        errs["float"] = max(errs["float"], (g - w).abs().max().item() / scale)
        errs["scheme"] = max(errs["scheme"], (g - sch[k].double()).abs().max().item() / scale)
        if tq:
            errs["torch_dynamic"] = max(errs["torch_dynamic"],
                                        (tq[k].double() - w).abs().max().item() / scale)
    return desc, errs, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--lstm", default="./lstm")
    ap.add_argument("--tol-scheme", type=float, default=1e-3)
    ap.add_argument("--tol-float", type=float, default=0.05)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    torch.set_num_threads(1)
    failed = 0
    worst = {"scheme": 0.0, "float": 0.0, "torch_dynamic": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.cases):
            desc, e, msg = run_case(rng, a.lstm, tmp, i)
            bad = e is None or not (e["scheme"] <= a.tol_scheme and e["float"] <= a.tol_float)
            failed += bad
            if e:
                for k in worst:
                    if e[k] is not None:
                        worst[k] = max(worst[k], e[k])
                print("%s case %2d  %-58s scheme %.1e  float %.1e  torch-dynamic %s"
                      % ("FAIL" if bad else "ok  ", i, desc, e["scheme"], e["float"],
                         "%.1e" % e["torch_dynamic"] if e["torch_dynamic"] is not None else "-"))
            else:
                print("FAIL case %2d  %-58s %s" % (i, desc, msg))
    print("%d cases: worst error relative to max|output|: against the int8 scheme %.2e "
          "(tolerance %.0e), against float %.2e (tolerance %.2g); PyTorch quantize_dynamic "
          "against float %.2e" % (a.cases, worst["scheme"], a.tol_scheme, worst["float"],
                                  a.tol_float, worst["torch_dynamic"]))
    print("%d passed, %d failed" % (a.cases - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
