#!/usr/bin/python3
"""gen_onnx_fixtures.py - reference values for the options of ONNX's LSTM
that PyTorch lacks (peephole, clip, input_forget, direction="reverse"), from
ONNX Runtime: an outside reference for the forward with them. Writes
tests/fixtures/onnx_lstm_<name>.safetensors (see tests/fixtures/README.md),
and for direction="reverse" also ONNX models with ONNX Runtime's outputs in
the layout of ONNX's node tests, tests/fixtures/onnx/NAME/ (listed in
tests/fixtures/onnx/ort_cases.txt), which tests/test_onnx.c imports.

For each case it builds a one-node ONNX model (LSTM, opset 14) with the
`onnx` package, runs it with onnxruntime-node (ONNX Runtime's CPU kernel,
float32) through a small Node.js script, and stores the weights under
PyTorch's names in PyTorch's gate order (ONNX's W/R/B rows are i, o, f, c;
ours i, f, g, o; ONNX's P is i, o, f, ours p_i, p_f, p_o), the inputs, and
ONNX Runtime's outputs in PyTorch's shapes. clip and input_forget go in the
metadata as lstm_rnn_config_infer reads them ("lstm.clip",
"lstm.input_forget", "lstm.reverse"). Every reverse case is also checked
here against PyTorch (1.13, float64): a reverse LSTM over a batch equals
nn.LSTM run forward over each sequence reversed within its length, its
output reversed back; the script stops if ONNX Runtime disagrees.

    /usr/bin/python3 tests/gen_onnx_fixtures.py [NODE_MODULES]

NODE_MODULES: the directory holding onnxruntime-node (default
$ORT_NODE_MODULES, else /work/coord/ort/node_modules). Seeds are fixed per
case; ONNX Runtime's float arithmetic is deterministic on one thread.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures  # noqa: E402  (its safetensors writer and checker)
import torch  # noqa: E402  (gen_fixtures' writer takes torch tensors)

OUT = gen_fixtures.OUT

RUNNER = r"""
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, feedsPath] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(feedsPath, 'utf8'));
  const feeds = {};
  for (const [name, t] of Object.entries(spec)) {
    const data = t.type === 'int32' ? Int32Array.from(t.data) : Float32Array.from(t.data);
    feeds[name] = new ort.Tensor(t.type, data, t.dims);
  }
  const sess = await ort.InferenceSession.create(model,
      {intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'disabled'});
  const out = await sess.run(feeds);
  const res = {};
  for (const [name, t] of Object.entries(out))
    res[name] = {dims: t.dims.map(Number), data: Array.from(t.data)};
  process.stdout.write(JSON.stringify(res));
})().catch(e => { console.error(String(e)); process.exit(1); });
"""

# name: I, H, T, B, bidirectional, peephole, clip (0: none), input_forget,
#       lengths (None: all T), h0[, reverse]
CASES = [
    ("peephole", 3, 4, 5, 2, 0, 1, 0.0, 0, None, 1),
    ("clip", 4, 5, 6, 3, 1, 0, 0.75, 0, [6, 2, 4], 0),
    ("input_forget", 3, 4, 5, 2, 0, 0, 0.0, 1, None, 1),
    ("peephole_clip_input_forget", 5, 17, 6, 3, 1, 1, 0.75, 1, [3, 6, 1], 1),
    ("peephole_bidir_lengths", 4, 6, 5, 3, 1, 1, 0.0, 0, [5, 2, 4], 1),
    ("reverse", 3, 4, 5, 2, 0, 0, 0.0, 0, None, 0, 1),
    ("reverse_lengths_h0", 4, 6, 7, 4, 0, 0, 0.0, 0, [7, 3, 1, 5], 1, 1),
    ("reverse_peephole_clip_input_forget", 5, 9, 6, 3, 0, 1, 0.75, 1, [2, 6, 4], 1, 1),
]

# ONNX models of reverse LSTM nodes (tests/fixtures/onnx/NAME/):
# name: I, H, layers, layout, T, B, lengths (None: no sequence_lens), initial state, opset
MODEL_CASES = [
    ("ort_rev1_lens_state_opset14", 3, 4, 1, 0, 5, 3, [5, 2, 4], True, 14),
    ("ort_rev1_layout1_lens_state_opset14", 3, 5, 1, 1, 6, 3, [3, 6, 1], True, 14),
    ("ort_rev2_lens_state_opset14", 4, 3, 2, 0, 5, 4, [4, 5, 1, 3], True, 14),
    ("ort_rev2_layout1_opset14", 2, 4, 2, 1, 4, 2, None, False, 14),
    ("ort_rev1_opset7", 3, 4, 1, 0, 4, 2, None, False, 7),
]

ONNX_TO_TORCH = [0, 2, 3, 1]  # our gate q (i, f, g, o) is ONNX's chunk (i, o, f, c)[...]
PEEP_TO_TORCH = [0, 2, 1]     # p_i, p_f, p_o from ONNX's (i, o, f)


def gates_to_torch(m, H):
    """Rows of a (4H, ...) ONNX block, reordered i, o, f, c -> i, f, g, o."""
    return np.concatenate([m[q * H:(q + 1) * H] for q in ONNX_TO_TORCH])


def run_ort(node_modules, model, feeds):
    with tempfile.TemporaryDirectory() as tmp:
        mpath = os.path.join(tmp, "m.onnx")
        onnx.save(model, mpath)
        fpath = os.path.join(tmp, "feeds.json")
        with open(fpath, "w") as f:
            json.dump({k: {"type": "int32" if v.dtype == np.int32 else "float32",
                           "dims": list(v.shape), "data": v.ravel().tolist()}
                       for k, v in feeds.items()}, f)
        rpath = os.path.join(tmp, "run.js")
        with open(rpath, "w") as f:
            f.write(RUNNER)
        env = dict(os.environ, NODE_PATH=node_modules)
        res = subprocess.run(["node", rpath, mpath, fpath], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            sys.exit("ONNX Runtime on %s: %s" % (model.graph.name, res.stderr.strip()))
        out = json.loads(res.stdout)
    return {k: np.array(v["data"], dtype=np.float32).reshape(v["dims"]) for k, v in out.items()}


def torch_reverse(X, lengths, layers, W, R, Bb, H0, C0):
    """PyTorch's outputs for a stack of reverse LSTM layers (ONNX weights:
    W[k] (4H, in), R[k] (4H, H), Bb[k] (8H) in ONNX's gate order; X (T, B, I);
    H0, C0 (layers, B, H) or None), from nn.LSTM in float64 run forward over
    each sequence reversed within its length: Y (T, B, H), h_n, c_n."""
    T, B, _ = X.shape
    H = R[0].shape[1]
    m = torch.nn.LSTM(X.shape[2], H, num_layers=layers).double()
    with torch.no_grad():
        for k in range(layers):
            for mine, onnx_w in (("weight_ih", W[k]), ("weight_hh", R[k]),
                                 ("bias_ih", Bb[k][:4 * H]), ("bias_hh", Bb[k][4 * H:])):
                getattr(m, "%s_l%d" % (mine, k)).copy_(
                    torch.from_numpy(gates_to_torch(onnx_w, H).astype(np.float64)))
    Y = np.zeros((T, B, H), dtype=np.float64)
    hn = np.zeros((layers, B, H), dtype=np.float64)
    cn = np.zeros((layers, B, H), dtype=np.float64)
    for b in range(B):
        n = lengths[b] if lengths else T
        xb = torch.from_numpy(X[:n, b:b + 1][::-1].astype(np.float64).copy())
        st = None
        if H0 is not None:
            st = (torch.from_numpy(H0[:, b:b + 1].astype(np.float64).copy()),
                  torch.from_numpy(C0[:, b:b + 1].astype(np.float64).copy()))
        with torch.no_grad():
            y, (h, c) = m(xb, st)
        Y[:n, b] = y[:, 0].numpy()[::-1]
        hn[:, b], cn[:, b] = h[:, 0].numpy(), c[:, 0].numpy()
    return Y, hn, cn


def agree(what, ort, ref):
    """ONNX Runtime's float32 (MLAS sigmoid and tanh) against PyTorch's float64."""
    err = np.max(np.abs(ort.astype(np.float64) - ref) / (2e-5 + 1e-4 * np.abs(ref)))
    if not err <= 1:
        sys.exit("%s: ONNX Runtime and PyTorch disagree (%.3g of the tolerance)" % (what, err))


def make_case(node_modules, name, I, H, T, B, bidir, peep, clip, cifg, lengths, h0, reverse=0):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    D = 2 if bidir else 1
    u = lambda *s: rng.uniform(-1, 1, size=s).astype(np.float32)  # noqa: E731
    X, W, R, Bb = u(T, B, I), u(D, 4 * H, I), u(D, 4 * H, H), u(D, 8 * H) * np.float32(0.5)
    P = u(D, 3 * H)
    H0, C0 = u(D, B, H), u(D, B, H)
    seq = np.array(lengths if lengths else [T] * B, dtype=np.int32)

    attrs = {"hidden_size": H,
             "direction": "bidirectional" if bidir else "reverse" if reverse else "forward"}
    if clip > 0:
        attrs["clip"] = float(clip)
    if cifg:
        attrs["input_forget"] = 1
    ins = ["X", "W", "R", "B", "sequence_lens", "initial_h" if h0 else "", "initial_c" if h0 else "",
           "P" if peep else ""]
    while ins[-1] == "":
        ins.pop()
    node = helper.make_node("LSTM", ins, ["Y", "Y_h", "Y_c"], **attrs)
    shapes = {"X": [T, B, I], "W": [D, 4 * H, I], "R": [D, 4 * H, H], "B": [D, 8 * H],
              "sequence_lens": [B], "initial_h": [D, B, H], "initial_c": [D, B, H],
              "P": [D, 3 * H]}
    inputs = [helper.make_tensor_value_info(
        n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, shapes[n])
        for n in ins if n]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, D, B, H]),
               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [D, B, H]),
               helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [D, B, H])]
    graph = helper.make_graph([node], "lstm_" + name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    feeds = {"X": X, "W": W, "R": R, "B": Bb, "sequence_lens": seq, "initial_h": H0,
             "initial_c": C0, "P": P}
    out = run_ort(node_modules, model, {n: feeds[n] for n in ins if n})

    if reverse and not peep and not clip and not cifg:
        ref = torch_reverse(X, lengths, 1, W, R, Bb, H0 if h0 else None, C0 if h0 else None)
        for got, want, what in zip((out["Y"][:, 0], out["Y_h"], out["Y_c"]), ref,
                                   ("Y", "Y_h", "Y_c")):
            agree("%s: %s" % (name, what), got, want)

    t = lambda a: ("F32", torch.from_numpy(np.ascontiguousarray(a)))  # noqa: E731
    tensors = {}
    for d in range(D):
        sfx = "_reverse" if d else ""
        tensors["weight_ih_l0" + sfx] = t(gates_to_torch(W[d], H))
        tensors["weight_hh_l0" + sfx] = t(gates_to_torch(R[d], H))
        tensors["bias_ih_l0" + sfx] = t(gates_to_torch(Bb[d, :4 * H], H))
        tensors["bias_hh_l0" + sfx] = t(gates_to_torch(Bb[d, 4 * H:], H))
        if peep:
            tensors["weight_peephole_l0" + sfx] = t(
                np.concatenate([P[d, q * H:(q + 1) * H] for q in PEEP_TO_TORCH]))
    tensors["input"] = t(X)
    if h0:
        tensors["h0"] = t(H0)
        tensors["c0"] = t(C0)
    if lengths:
        tensors["lengths"] = ("I64", torch.tensor(lengths, dtype=torch.int64))
    tensors["output"] = t(out["Y"].transpose(0, 2, 1, 3).reshape(T, B, D * H))
    tensors["h_n"] = t(out["Y_h"])
    tensors["c_n"] = t(out["Y_c"])
    meta = {"input_size": str(I), "hidden_size": str(H), "bidirectional": str(bidir),
            "peephole": str(peep), "T": str(T), "B": str(B), "has_h0": str(h0),
            "has_lengths": "1" if lengths else "0",
            "note": "ONNX Runtime (onnxruntime-node) LSTM, opset 14: " + name}
    if clip > 0:
        meta["lstm.clip"] = repr(float(np.float32(clip)))
    if cifg:
        meta["lstm.input_forget"] = "1"
    if reverse:
        meta["lstm.reverse"] = "1"
    gen_fixtures.save("onnx_lstm_%s.safetensors" % name, tensors, meta)


def save_pb(d, kind, k, name, a):
    tp = onnx.numpy_helper.from_array(np.ascontiguousarray(a), name)
    with open(os.path.join(d, "test_data_set_0", "%s_%d.pb" % (kind, k)), "wb") as f:
        f.write(tp.SerializeToString())


def make_model_case(node_modules, name, I, H, L, layout, T, B, lengths, state, opset):
    """A stack of L reverse LSTM nodes as an exporter would write it: layer
    k's Y, (T, 1, B, H) (layout 0) or (B, T, 1, H) (layout 1), squeezed
    into the next layer's X; the state inputs sliced per layer; Y_h and
    Y_c concatenated. Weights and biases are initializers. ONNX Runtime's
    CPU kernel refuses layout 1 ("Batchwise recurrent operations (layout ==
    1) are not supported"), so a layout-1 model's outputs are ONNX Runtime's
    for the same graph in layout 0 (layout only orders the axes of X, Y,
    Y_h, Y_c and the states), transposed; PyTorch checks them as always."""
    if layout:
        feeds, out = build_model(name, I, H, L, 0, T, B, lengths, state, opset)[1:]
        out = run_ort(node_modules, out, feeds)
        out = {"Y": out["Y"].transpose(2, 0, 1, 3), "Y_h": out["Y_h"].transpose(1, 0, 2),
               "Y_c": out["Y_c"].transpose(1, 0, 2)}
    model, feeds, gin, X, W, R, Bb, H0, C0, nn_ = build_model(name, I, H, L, layout, T, B, lengths,
                                                               state, opset, full=True)
    if not layout:
        out = run_ort(node_modules, model, feeds)
    bl = lambda a: a.transpose(1, 0, 2) if layout else a  # noqa: E731
    # the outside reference's cross-check: PyTorch over the reversed sequences
    ref = torch_reverse(X, lengths, L, [w[0] for w in W], [r[0] for r in R], [b[0] for b in Bb],
                        H0 if state else None, C0 if state else None)
    Yt = out["Y"].transpose(1, 2, 0, 3) if layout else out["Y"]  # (T, 1, B, H)
    agree(name + ": Y", Yt[:, 0], ref[0])
    agree(name + ": Y_h", bl(out["Y_h"]), ref[1])
    agree(name + ": Y_c", bl(out["Y_c"]), ref[2])
    d = os.path.join(OUT, "onnx", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    for k, gi in enumerate(gin):
        save_pb(d, "input", k, gi.name, feeds[gi.name])
    for k, o in enumerate(("Y", "Y_h", "Y_c")):
        save_pb(d, "output", k, o, out[o])
    print("%-44s %d nodes, ONNX Runtime's outputs%s (PyTorch agrees)"
          % ("onnx/" + name, nn_, " (of layout 0)" if layout else ""))


def build_model(name, I, H, L, layout, T, B, lengths, state, opset, full=False):
    """The graph of make_model_case, its feeds; with full, also its graph
    inputs, the arrays drawn and the node count."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    u = lambda *s: rng.uniform(-1, 1, size=s).astype(np.float32)  # noqa: E731
    X = u(T, B, I)
    W = [u(1, 4 * H, I if k == 0 else H) for k in range(L)]
    R = [u(1, 4 * H, H) for k in range(L)]
    Bb = [u(1, 8 * H) * np.float32(0.5) for k in range(L)]
    H0, C0 = u(L, B, H), u(L, B, H)
    seq = np.array(lengths if lengths else [T] * B, dtype=np.int32)
    bl = lambda a: a.transpose(1, 0, 2) if layout else a  # noqa: E731  (T|L, B, .) -> (B, T|L, .)
    sq = 2 if layout else 1  # the D axis of Y
    saxis = 1 if layout else 0  # the layer axis of a state
    inits, nodes = [], []
    gin = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [B, T, I] if layout else [T, B, I])]
    feeds = {"X": bl(X)}
    if lengths:
        gin.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
        feeds["sequence_lens"] = seq
    if state:
        for s_ in ("h0", "c0"):
            gin.append(helper.make_tensor_value_info(s_, TensorProto.FLOAT, [B, L, H] if layout else [L, B, H]))
        feeds["h0"], feeds["c0"] = bl(H0), bl(C0)
    x = "X"
    yh, yc = [], []
    if opset < 13 and L > 1:
        sys.exit("%s: Squeeze with an axes input needs opset 13" % name)
    if L > 1 or state:
        inits.append(onnx.numpy_helper.from_array(np.array([sq], dtype=np.int64), "sq_axes"))
        inits.append(onnx.numpy_helper.from_array(np.array([saxis], dtype=np.int64), "st_axis"))
    for k in range(L):
        for n_, a in (("W", W[k]), ("R", R[k]), ("B", Bb[k])):
            inits.append(onnx.numpy_helper.from_array(a, "%s_l%d" % (n_, k)))
        ins = [x, "W_l%d" % k, "R_l%d" % k, "B_l%d" % k, "sequence_lens" if lengths else ""]
        if state:
            inits.append(onnx.numpy_helper.from_array(np.array([k], dtype=np.int64), "begin_l%d" % k))
            inits.append(onnx.numpy_helper.from_array(np.array([k + 1], dtype=np.int64), "end_l%d" % k))
            for s_ in ("h0", "c0"):
                nodes.append(helper.make_node("Slice", [s_, "begin_l%d" % k, "end_l%d" % k, "st_axis"],
                                              ["%s_l%d" % (s_, k)], name="slice_%s_l%d" % (s_, k)))
            ins += ["h0_l%d" % k, "c0_l%d" % k]
        while ins[-1] == "":
            ins.pop()
        attrs = {"hidden_size": H, "direction": "reverse"}
        if layout:
            attrs["layout"] = 1
        y = "Y" if k == L - 1 else "Y_l%d" % k
        nodes.append(helper.make_node("LSTM", ins, [y, "Y_h_l%d" % k, "Y_c_l%d" % k],
                                      name="lstm_l%d" % k, **attrs))
        yh.append("Y_h_l%d" % k)
        yc.append("Y_c_l%d" % k)
        if k < L - 1:
            x = "X_l%d" % (k + 1)
            nodes.append(helper.make_node("Squeeze", [y, "sq_axes"], [x], name="squeeze_l%d" % k))
    for o, parts in (("Y_h", yh), ("Y_c", yc)):
        if L > 1:
            nodes.append(helper.make_node("Concat", parts, [o], name="concat_" + o, axis=saxis))
        else:
            nodes.append(helper.make_node("Identity", parts, [o], name="identity_" + o))
    ys = [B, T, 1, H] if layout else [T, 1, B, H]
    ss = [B, L, H] if layout else [L, B, H]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ys),
               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, ss),
               helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, ss)]
    graph = helper.make_graph(nodes, name, gin, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    if not full:
        return model, feeds, model
    return model, feeds, gin, X, W, R, Bb, H0, C0, len(nodes)


def main():
    node_modules = (sys.argv[1] if len(sys.argv) > 1 else
                    os.environ.get("ORT_NODE_MODULES", "/work/coord/ort/node_modules"))
    if not os.path.isdir(os.path.join(node_modules, "onnxruntime-node")):
        sys.exit("no onnxruntime-node under %s" % node_modules)
    for case in CASES:
        make_case(node_modules, *case)
    for case in MODEL_CASES:
        make_model_case(node_modules, *case)
    with open(os.path.join(OUT, "onnx", "ort_cases.txt"), "w") as f:
        f.write("# written by tests/gen_onnx_fixtures.py: one case per line, ONNX Runtime's outputs\n")
        for case in MODEL_CASES:
            f.write(case[0] + "\n")


if __name__ == "__main__":
    main()
