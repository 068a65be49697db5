#!/usr/bin/python3
"""gen_onnx_fixtures.py - reference values for the options of ONNX's LSTM
that PyTorch lacks (peephole, clip, input_forget), from ONNX Runtime: an
outside reference for the cell's forward with them. Writes
tests/fixtures/onnx_lstm_<name>.safetensors (see tests/fixtures/README.md).

For each case it builds a one-node ONNX model (LSTM, opset 14) with the
`onnx` package, runs it with onnxruntime-node (ONNX Runtime's CPU kernel,
float32) through a small Node.js script, and stores the weights under
PyTorch's names in PyTorch's gate order (ONNX's W/R/B rows are i, o, f, c;
ours i, f, g, o; ONNX's P is i, o, f, ours p_i, p_f, p_o), the inputs, and
ONNX Runtime's outputs in PyTorch's shapes. clip and input_forget go in the
metadata as lstm_rnn_config_infer reads them ("lstm.clip",
"lstm.input_forget").

    /usr/bin/python3 tests/gen_onnx_fixtures.py [NODE_MODULES]

NODE_MODULES: the directory holding onnxruntime-node (default
$ORT_NODE_MODULES, else /work/coord/ort/node_modules). Seeds are fixed per
case; ONNX Runtime's float arithmetic is deterministic on one thread.
"""

import json
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
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
#       lengths (None: all T), h0
CASES = [
    ("peephole", 3, 4, 5, 2, 0, 1, 0.0, 0, None, 1),
    ("clip", 4, 5, 6, 3, 1, 0, 0.75, 0, [6, 2, 4], 0),
    ("input_forget", 3, 4, 5, 2, 0, 0, 0.0, 1, None, 1),
    ("peephole_clip_input_forget", 5, 17, 6, 3, 1, 1, 0.75, 1, [3, 6, 1], 1),
    ("peephole_bidir_lengths", 4, 6, 5, 3, 1, 1, 0.0, 0, [5, 2, 4], 1),
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
        res = subprocess.run(["node", rpath, mpath, fpath], env=env, check=True,
                             capture_output=True, text=True)
        out = json.loads(res.stdout)
    return {k: np.array(v["data"], dtype=np.float32).reshape(v["dims"]) for k, v in out.items()}


def make_case(node_modules, name, I, H, T, B, bidir, peep, clip, cifg, lengths, h0):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    D = 2 if bidir else 1
    u = lambda *s: rng.uniform(-1, 1, size=s).astype(np.float32)  # noqa: E731
    X, W, R, Bb = u(T, B, I), u(D, 4 * H, I), u(D, 4 * H, H), u(D, 8 * H) * np.float32(0.5)
    P = u(D, 3 * H)
    H0, C0 = u(D, B, H), u(D, B, H)
    seq = np.array(lengths if lengths else [T] * B, dtype=np.int32)

    attrs = {"hidden_size": H, "direction": "bidirectional" if bidir else "forward"}
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
    gen_fixtures.save("onnx_lstm_%s.safetensors" % name, tensors, meta)


def main():
    node_modules = (sys.argv[1] if len(sys.argv) > 1 else
                    os.environ.get("ORT_NODE_MODULES", "/work/coord/ort/node_modules"))
    if not os.path.isdir(os.path.join(node_modules, "onnxruntime-node")):
        sys.exit("no onnxruntime-node under %s" % node_modules)
    for case in CASES:
        make_case(node_modules, *case)


if __name__ == "__main__":
    main()
