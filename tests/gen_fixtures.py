#!/usr/bin/python3
"""gen_fixtures.py - writes the PyTorch reference values that the C tests
compare against, as small safetensors files in tests/fixtures/.

Every input (weights, x, h0, c0, upstream gradients, optimizer gradients) is
a float32 value held in a double; every reference is computed by PyTorch in
float64 and stored rounded to float32. Seeds are fixed per fixture, so a
re-run gives byte-identical files. See tests/fixtures/README.md.

    /usr/bin/python3 tests/gen_fixtures.py            # write and verify
    /usr/bin/python3 tests/gen_fixtures.py --f32-error  # also report how far
        # PyTorch's own float32 computation lands from each reference
"""

import hashlib
import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# ---------------------------------------------------------------------------
# safetensors, written and read by hand (the package is not installed).
# Layout as safetensors.torch.save_file: u64 LE header length N, compact JSON
# header padded with spaces so that 8 + N is a multiple of 8, then the
# tensors back to back, ordered by dtype (wider alignment first) then name.

DTYPES = {  # name: (numpy dtype, alignment rank used for ordering)
    "F64": ("<f8", 8),
    "I64": ("<i8", 8),
    "F32": ("<f4", 4),
    "I32": ("<i4", 4),
}
# safetensors sorts by its Dtype enum, descending: ... I64 > F64 > F32 > I32.
DTYPE_RANK = {"I64": 3, "F64": 2, "F32": 1, "I32": 0}


def f32(t):
    """The tensor as float64 holding float32-representable values."""
    return t.detach().to(torch.float32).to(torch.float64)


def st_write(path, tensors, metadata):
    """tensors: dict name -> (dtype string, torch tensor); metadata: str->str."""
    items = []
    for name, (dt, t) in tensors.items():
        arr = np.ascontiguousarray(t.detach().cpu().numpy().astype(DTYPES[dt][0]))
        items.append((name, dt, list(t.shape), arr.tobytes()))
    items.sort(key=lambda it: (-DTYPE_RANK[it[1]], it[0].encode()))
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    off = 0
    for name, dt, shape, data in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for it in items:
            f.write(it[3])


def st_read(path):
    """Parses a file written by st_write; returns (tensors as numpy, metadata)
    after checking the layout rules (offsets contiguous, order, padding)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert (8 + n) % 8 == 0, "header not padded"
    header = json.loads(buf[8:8 + n].decode())
    meta = header.pop("__metadata__", {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    data = buf[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    expect = sorted(header, key=lambda k: (-DTYPE_RANK[header[k]["dtype"]], k.encode()))
    assert [k for k, _ in entries] == expect, "tensor order differs from save_file's"
    out, pos = {}, 0
    for name, e in entries:
        b, end = e["data_offsets"]
        assert b == pos, "gap in data"
        npdt = np.dtype(DTYPES[e["dtype"]][0])
        count = int(np.prod(e["shape"])) if e["shape"] else 1
        assert end - b == count * npdt.itemsize, "size mismatch for " + name
        out[name] = np.frombuffer(data[b:end], dtype=npdt).reshape(e["shape"])
        pos = end
    assert pos == len(data), "trailing bytes"
    return out, meta


def save(fname, tensors, metadata):
    """Writes, re-reads and compares; prints the one-line summary."""
    path = os.path.join(OUT, fname)
    st_write(path, tensors, metadata)
    back, meta = st_read(path)
    assert meta == metadata
    assert set(back) == set(tensors)
    for name, (dt, t) in tensors.items():
        want = t.detach().cpu().numpy().astype(DTYPES[dt][0])
        assert back[name].shape == want.shape, name
        assert np.array_equal(back[name], want), name
        if dt == "F32":
            assert np.all(np.isfinite(back[name])), name
    size = os.path.getsize(path)
    print("%-44s %3d tensors %7d bytes  %s" % (fname, len(tensors), size,
                                                metadata.get("note", "")))
    return size


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def seed_of(name):
    return zlib.crc32(name.encode())


def uniform(g, shape, lo=-0.5, hi=0.5):
    return f32(torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo)


def normal(g, shape, scale=1.0):
    return f32(torch.randn(shape, generator=g, dtype=torch.float64) * scale)


def flag(b):
    return "1" if b else "0"


# ---------------------------------------------------------------------------
# 1. LSTM

# name, I, H, layers, bias, batch_first, bidirectional, proj, T, B, h0, lengths, note
LSTM_CASES = [
    ("basic", 3, 4, 1, 1, 0, 0, 0, 5, 2, 0, None, "1 layer, zero initial state"),
    ("h0", 4, 5, 1, 1, 0, 0, 0, 4, 3, 1, None, "1 layer with h0/c0"),
    ("t1", 3, 7, 1, 1, 0, 0, 0, 1, 2, 1, None, "T=1 with h0/c0"),
    ("b1", 5, 9, 1, 1, 0, 0, 0, 6, 1, 0, None, "B=1"),
    ("nobias", 4, 6, 1, 0, 0, 0, 0, 3, 2, 1, None, "bias=False with h0/c0"),
    ("batch_first", 5, 7, 1, 1, 1, 0, 0, 4, 3, 1, None, "batch_first with h0/c0"),
    ("lengths", 3, 5, 1, 1, 0, 0, 0, 6, 4, 0, [3, 6, 1, 4],
     "unsorted lengths incl. T and 1"),
    ("lengths_h0", 4, 7, 1, 1, 0, 0, 0, 5, 5, 1, [2, 5, 1, 5, 3],
     "lengths with repeats, h0/c0"),
    ("lengths_full", 3, 4, 1, 1, 1, 0, 0, 4, 2, 0, [4, 4],
     "batch_first, every length equal to T"),
    ("bidir", 3, 5, 1, 1, 0, 1, 0, 4, 2, 0, None, "bidirectional"),
    ("bidir_h0_lengths", 6, 4, 1, 1, 0, 1, 0, 5, 3, 1, [2, 5, 1],
     "bidirectional, lengths, h0/c0"),
    ("proj", 4, 8, 1, 1, 0, 0, 3, 4, 2, 1, None, "proj_size 3 with h0/c0"),
    ("proj_lengths", 5, 6, 1, 1, 0, 0, 2, 5, 3, 0, [5, 1, 3], "proj_size 2 with lengths"),
    ("layers2", 3, 5, 2, 1, 0, 0, 0, 5, 2, 1, None, "2 layers with h0/c0"),
    ("layers3", 7, 9, 3, 1, 0, 0, 0, 4, 3, 0, None, "3 layers"),
    ("layers2_bidir", 4, 6, 2, 1, 0, 1, 0, 3, 2, 0, None, "2 layers bidirectional"),
    ("layers2_bidir_proj_lengths_h0", 5, 7, 2, 1, 0, 1, 4, 6, 4, 1, [4, 6, 1, 3],
     "2 layers bidirectional, proj 4, lengths, h0/c0"),
    ("layers3_bidir_bf_lengths", 3, 5, 3, 1, 1, 1, 0, 7, 3, 0, [7, 2, 1],
     "3 layers bidirectional batch_first with lengths"),
    ("layers2_nobias_bidir_proj_bf", 4, 5, 2, 0, 1, 1, 3, 3, 2, 1, [3, 1],
     "2 layers, bias=False, bidirectional, proj 3, batch_first, lengths, h0/c0"),
    ("layers2_bidir_t1_b1", 3, 4, 2, 1, 0, 1, 0, 1, 1, 1, None,
     "2 layers bidirectional, T=1, B=1, h0/c0"),
    ("h20_proj7", 6, 20, 2, 1, 0, 0, 7, 4, 3, 1, [4, 2, 3],
     "2 layers, hidden 20, proj 7, lengths, h0/c0"),
    ("tails", 17, 33, 1, 1, 0, 0, 0, 6, 5, 1, None,
     "input 17, hidden 33, B 5: vector tails"),
]


def lstm_run(case, dtype=torch.float64, tensors=None):
    """Builds the case's module and inputs (from its seed) and runs forward
    and backward in dtype. Returns the dict of tensors to store and the
    module, or, when tensors (a stored float64 run) is given, the max
    relative-to-scale errors of a run in dtype against it."""
    (name, I, H, L, bias, bf, bidir, P, T, B, has_h0, lengths, note) = case
    D = 2 if bidir else 1
    Hout = P if P else H
    g = gen(seed_of("lstm_" + name))
    torch.manual_seed(0)  # the module's own init is overwritten below
    lstm = nn.LSTM(I, H, num_layers=L, bias=bool(bias), batch_first=bool(bf),
                   bidirectional=bool(bidir), proj_size=P, dtype=torch.float64)
    with torch.no_grad():
        for pname, p in lstm.named_parameters():
            p.copy_(uniform(g, p.shape))
    x = uniform(g, (B, T, I) if bf else (T, B, I), -1.0, 1.0)
    h0 = uniform(g, (L * D, B, Hout), -1.0, 1.0) if has_h0 else None
    c0 = uniform(g, (L * D, B, H), -1.0, 1.0) if has_h0 else None
    gy = normal(g, (B, T, D * Hout) if bf else (T, B, D * Hout))
    ghn = normal(g, (L * D, B, Hout))
    gcn = normal(g, (L * D, B, H))

    lstm = lstm.to(dtype)
    x_ = x.to(dtype).requires_grad_(True)
    hx = None
    if has_h0:
        h0_ = h0.to(dtype).requires_grad_(True)
        c0_ = c0.to(dtype).requires_grad_(True)
        hx = (h0_, c0_)
    if lengths is not None:
        lens = torch.tensor(lengths, dtype=torch.int64)
        packed = pack_padded_sequence(x_, lens, batch_first=bool(bf), enforce_sorted=False)
        out_p, (hn, cn) = lstm(packed, hx)
        out, out_lens = pad_packed_sequence(out_p, batch_first=bool(bf), total_length=T)
        assert torch.equal(out_lens, lens)
    else:
        out, (hn, cn) = lstm(x_, hx)
    loss = ((out * gy.to(dtype)).sum() + (hn * ghn.to(dtype)).sum()
            + (cn * gcn.to(dtype)).sum())
    loss.backward()

    # h_n of the top layer: forward at each sequence's last step, reverse at t = 0
    for b in range(B):
        n = lengths[b] if lengths is not None else T
        ob = out[b] if bf else out[:, b]
        assert torch.equal(hn[(L - 1) * D, b], ob[n - 1, :Hout])
        if bidir:
            assert torch.equal(hn[L * D - 1, b], ob[0, Hout:])

    res = {}
    for pname, p in lstm.named_parameters():
        res[pname] = p.detach()
        res["grad." + pname] = p.grad.detach()
    res["input"] = x
    res["output"] = out.detach()
    res["h_n"] = hn.detach()
    res["c_n"] = cn.detach()
    res["grad_output"] = gy
    res["grad_h_n"] = ghn
    res["grad_c_n"] = gcn
    res["grad.input"] = x_.grad.detach()
    if has_h0:
        res["h0"] = h0
        res["c0"] = c0
        res["grad.h0"] = h0_.grad.detach()
        res["grad.c0"] = c0_.grad.detach()
    if lengths is not None:
        # zero past each length, and nothing leaks from grad_output there
        for b, n in enumerate(lengths):
            pad = out[b, n:] if bf else out[n:, b]
            assert torch.all(pad == 0)
            gpad = x_.grad[b, n:] if bf else x_.grad[n:, b]
            assert torch.all(gpad == 0)
    if tensors is None:
        return res, lstm
    worst = {}
    for k, v in res.items():
        ref = tensors[k].double()
        err = (v.double() - ref).abs().max().item() if v.numel() else 0.0
        scale = max(ref.abs().max().item(), 1e-30)
        worst[k] = (err, err / scale)
    return worst


def lstm_fixtures(f32_error):
    total = 0
    names = set()
    for case in LSTM_CASES:
        (name, I, H, L, bias, bf, bidir, P, T, B, has_h0, lengths, note) = case
        assert name not in names
        names.add(name)
        assert P == 0 or P < H
        if lengths is not None:
            assert len(lengths) == B and all(1 <= n <= T for n in lengths)
        res, lstm = lstm_run(case)
        tensors = {k: ("F32", v) for k, v in res.items()}
        if lengths is not None:
            tensors["lengths"] = ("I64", torch.tensor(lengths, dtype=torch.int64))
        meta = {
            "input_size": str(I), "hidden_size": str(H), "num_layers": str(L),
            "bias": flag(bias), "batch_first": flag(bf), "bidirectional": flag(bidir),
            "proj_size": str(P), "T": str(T), "B": str(B), "has_h0": flag(has_h0),
            "has_lengths": flag(lengths is not None), "note": note,
        }
        total += save("lstm_%s.safetensors" % name, tensors, meta)
        if f32_error:
            worst = lstm_run(case, torch.float32, res)
            k = max(worst, key=lambda k: worst[k][1])
            ka = max(worst, key=lambda k: worst[k][0])
            print("    torch float32 vs float64: max abs err %.2e (%s), "
                  "max err/max|ref| %.2e (%s)" % (worst[ka][0], ka, worst[k][1], k))
    return total


# ---------------------------------------------------------------------------
# 2. Optimizers

OPTIM_CASES = [
    ("sgd", "sgd", dict(lr=0.1)),
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.1)),
    ("sgd_nesterov", "sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", "adam", dict(lr=1e-2)),
    ("adam_wd", "adam", dict(lr=1e-2, weight_decay=0.1)),
    ("adamw", "adamw", dict(lr=1e-2, weight_decay=0.05)),
    ("rmsprop", "rmsprop", dict(lr=1e-2)),
    ("rmsprop_centered", "rmsprop",
     dict(lr=1e-2, centered=True, momentum=0.5, weight_decay=0.01)),
    ("adadelta", "adadelta", dict()),
    ("adadelta_wd", "adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.02)),
]
OPTIM_CLASS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
               "adadelta": torch.optim.Adadelta}
# The hyper-parameters stored for each optimizer, by torch.optim's names.
OPTIM_KEYS = {
    "sgd": ["lr", "momentum", "dampening", "nesterov", "weight_decay"],
    "adam": ["lr", "betas", "eps", "weight_decay", "amsgrad"],
    "adamw": ["lr", "betas", "eps", "weight_decay", "amsgrad"],
    "rmsprop": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
    "adadelta": ["lr", "rho", "eps", "weight_decay"],
}
STEPS = 6


def hp_str(v):
    if isinstance(v, bool):
        return flag(v)
    return repr(float(v))  # torch keeps some defaults as int 0: write "0.0"


def optim_run(kind, kw, dtype, g):
    p0 = normal(g, (4, 3))
    p1 = normal(g, (5,))
    grads = [(normal(g, (4, 3)), normal(g, (5,))) for _ in range(STEPS)]
    params = [p0.clone().to(dtype).requires_grad_(True), p1.clone().to(dtype).requires_grad_(True)]
    opt = OPTIM_CLASS[kind](params, **kw)
    after = []
    for g0, g1 in grads:
        params[0].grad = g0.clone().to(dtype)
        params[1].grad = g1.clone().to(dtype)
        opt.step()
        after.append((params[0].detach().clone(), params[1].detach().clone()))
    return p0, p1, grads, after, opt


def optim_fixtures(f32_error):
    total = 0
    for name, kind, kw in OPTIM_CASES:
        p0, p1, grads, after, opt = optim_run(kind, kw, torch.float64,
                                              gen(seed_of("optim_" + name)))
        tensors = {"init.p0": ("F32", p0), "init.p1": ("F32", p1)}
        for k in range(STEPS):
            tensors["grad.%d.p0" % k] = ("F32", grads[k][0])
            tensors["grad.%d.p1" % k] = ("F32", grads[k][1])
            tensors["after.%d.p0" % k] = ("F32", after[k][0])
            tensors["after.%d.p1" % k] = ("F32", after[k][1])
        group = opt.param_groups[0]
        meta = {"optimizer": kind, "steps": str(STEPS)}
        for key in OPTIM_KEYS[kind]:
            if key == "betas":
                meta["beta1"] = hp_str(group["betas"][0])
                meta["beta2"] = hp_str(group["betas"][1])
            else:
                meta[key] = hp_str(group[key])
        meta["note"] = "%s %s, %d steps" % (kind, ", ".join(
            "%s=%s" % (k, hp_str(v)) for k, v in sorted(kw.items())) or "defaults", STEPS)
        total += save("optim_%s.safetensors" % name, tensors, meta)
        if f32_error:
            _, _, _, a32, _ = optim_run(kind, kw, torch.float32,
                                        gen(seed_of("optim_" + name)))
            err = max((a32[k][i].double() - after[k][i]).abs().max().item()
                      for k in range(STEPS) for i in range(2))
            print("    torch float32 vs float64: max abs err %.2e" % err)
    return total


# ---------------------------------------------------------------------------
# 3. Gradient clipping

def clip_fixture():
    g = gen(seed_of("clip"))
    cases = [(1.0, 1.0), (1.0, 0.1), (0.5, 10.0)]  # (max_norm, gradient scale)
    tensors, meta = {}, {}
    for k, (max_norm, scale) in enumerate(cases):
        a = normal(g, (3, 4), scale)
        b = normal(g, (7,), scale)
        pa = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
        pb = torch.zeros(7, dtype=torch.float64, requires_grad=True)
        pa.grad = a.clone()
        pb.grad = b.clone()
        norm = torch.nn.utils.clip_grad_norm_([pa, pb], max_norm)
        if k == 1:
            assert norm.item() < max_norm
            assert torch.equal(pa.grad, a) and torch.equal(pb.grad, b)
        else:
            assert norm.item() > max_norm
        tensors["case%d.a" % k] = ("F32", a)
        tensors["case%d.b" % k] = ("F32", b)
        tensors["case%d.clipped.a" % k] = ("F32", pa.grad)
        tensors["case%d.clipped.b" % k] = ("F32", pb.grad)
        tensors["case%d.norm" % k] = ("F32", norm.detach().reshape(()))
        meta["case%d.max_norm" % k] = hp_str(max_norm)
    meta["cases"] = str(len(cases))
    meta["norm_type"] = "2.0"
    meta["note"] = "clip_grad_norm_: above, below, and max_norm 0.5 with large gradients"
    return save("clip.safetensors", tensors, meta)


# ---------------------------------------------------------------------------
# 4. Learning-rate schedules

def schedule_lrs(make, n):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(n - 1):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return lrs


def schedules_fixture():
    S = torch.optim.lr_scheduler
    step = schedule_lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5), 10)
    expo = schedule_lrs(lambda o: S.ExponentialLR(o, gamma=0.9), 10)
    cos_rec = schedule_lrs(lambda o: S.CosineAnnealingLR(o, T_max=8, eta_min=0.001), 9)
    cos = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(9)]
    for e in range(10):
        assert abs(step[e] - 0.1 * 0.5 ** (e // 3)) < 1e-15
        assert abs(expo[e] - 0.1 * 0.9 ** e) < 1e-15
    for e in range(9):
        assert abs(cos_rec[e] - cos[e]) < 1e-12, (e, cos_rec[e], cos[e])
    t = lambda v: ("F32", torch.tensor(v, dtype=torch.float64))
    meta = {
        "base_lr": "0.1",
        "step.step_size": "3", "step.gamma": "0.5",
        "exponential.gamma": "0.9",
        "cosine.T_max": "8", "cosine.eta_min": "0.001",
        "note": "lr at epochs 0..N-1: StepLR, ExponentialLR, CosineAnnealingLR",
    }
    return save("schedules.safetensors", {"step": t(step), "exponential": t(expo),
                                          "cosine": t(cos)}, meta)


# ---------------------------------------------------------------------------
# 5. Layers: cross-entropy and pooling over padded sequences

def layers_fixture():
    g = gen(seed_of("layers"))
    logits = normal(g, (6, 5), 2.0).requires_grad_(True)
    targets = torch.tensor([3, 0, -100, 4, 1, 3], dtype=torch.int64)
    logp = F.log_softmax(logits, dim=1)
    loss = F.nll_loss(logp, targets, ignore_index=-100, reduction="sum")
    loss.backward()
    ref = F.cross_entropy(logits.detach(), targets, ignore_index=-100, reduction="sum")
    assert abs(ref.item() - loss.item()) < 1e-12
    assert torch.all(logits.grad[2] == 0)

    T, B, Fe = 4, 3, 2
    x = normal(g, (T, B, Fe))
    lengths = [4, 1, 2]
    mean = torch.stack([x[:n, b].mean(0) for b, n in enumerate(lengths)])
    last = torch.stack([x[n - 1, b] for b, n in enumerate(lengths)])
    tensors = {
        "ce.logits": ("F32", logits.detach()),
        "ce.targets": ("I64", targets),
        "ce.logp": ("F32", logp.detach()),
        "ce.loss_sum": ("F32", loss.detach().reshape(())),
        "ce.grad_logits": ("F32", logits.grad),
        "pool.x": ("F32", x),
        "pool.lengths": ("I64", torch.tensor(lengths, dtype=torch.int64)),
        "pool.mean": ("F32", mean),
        "pool.last": ("F32", last),
    }
    meta = {"ce.ignore_index": "-100", "pool.T": str(T), "pool.B": str(B),
            "pool.F": str(Fe),
            "note": "cross-entropy (sum, ignore_index) and mean/last pooling"}
    return save("layers.safetensors", tensors, meta)


def main():
    f32_error = "--f32-error" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    total = lstm_fixtures(f32_error)
    total += optim_fixtures(f32_error)
    total += clip_fixture()
    total += schedules_fixture()
    total += layers_fixture()
    digest = hashlib.sha256()
    for fn in sorted(os.listdir(OUT)):
        if fn.endswith(".safetensors"):
            with open(os.path.join(OUT, fn), "rb") as f:
                digest.update(fn.encode() + b"\0" + f.read())
    print("total %d bytes, sha256 of all fixtures %s" % (total, digest.hexdigest()[:16]))


if __name__ == "__main__":
    main()
