#!/usr/bin/python3
"""gen_onnx_torch_fixtures.py - writes ONNX models exported by PyTorch's own
exporter (torch.onnx.export of nn.LSTM, PyTorch 1.13) with PyTorch's outputs,
for tests/test_onnx.c, under tests/fixtures/onnx/NAME/ in the layout of
ONNX's node tests: model.onnx, test_data_set_0/input_K.pb (the graph's
inputs, in order) and output_K.pb (its outputs), TensorProto files.

Inputs and weights are float32; the outputs are PyTorch's in float64 (the
module and inputs converted with .double()), rounded to float32. Seeds are
fixed per case. Run from the repository root with Debian's Python:

    /usr/bin/python3 tests/gen_onnx_torch_fixtures.py

It also writes the seed corpus of fuzz/fuzz_onnx.c (fuzz/corpus/onnx).
"""

import os
import shutil
import warnings

import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "onnx")

# name: (I, H, layers, bidirectional, batch_first, bias, T, B, initial state, opset[,
# lengths]); with lengths, the module packs its input (pack_padded_sequence,
# enforce_sorted=False) and pads its output back (pad_packed_sequence), which
# the exporter writes as a sort of the batch by length (TopK, Gather), LSTM
# nodes with sequence_lens, and the inverse order (ScatterElements, Gather).
CASES = {
    "uni1_opset9": (3, 4, 1, False, False, True, 5, 2, False, 9),
    "uni3_state_opset11": (3, 4, 3, False, False, True, 4, 3, True, 11),
    "uni2_bf_opset13": (2, 5, 2, False, True, True, 6, 2, False, 13),
    "bi1_opset7": (3, 4, 1, True, False, True, 5, 2, False, 7),
    "bi2_bf_state_opset14": (3, 4, 2, True, True, True, 5, 2, True, 14),
    "bi3_nobias_opset17": (4, 3, 3, True, False, False, 3, 4, True, 17),
    "bi2_packed_opset14": (3, 4, 2, True, False, True, 6, 3, False, 14, [6, 2, 4]),
}


class Packed(nn.Module):
    """nn.LSTM over a padded batch with lengths, as users write it."""

    def __init__(self, lstm, T):
        super().__init__()
        self.lstm, self.T = lstm, T

    def forward(self, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        p = pack_padded_sequence(x, lengths, batch_first=self.lstm.batch_first, enforce_sorted=False)
        y, (h, c) = self.lstm(p)
        y, _ = pad_packed_sequence(y, batch_first=self.lstm.batch_first, total_length=self.T)
        return y, h, c


def write(name, I, H, L, bi, bf, bias, T, B, state, opset, lengths=None):
    torch.manual_seed(sum(map(ord, name)))
    m = nn.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=bf, bias=bias).eval()
    D = 2 if bi else 1
    x = torch.randn((B, T, I) if bf else (T, B, I))
    args, names = (x,), ["input"]
    if state:
        h0, c0 = torch.randn(L * D, B, H), torch.randn(L * D, B, H)
        args, names = (x, (h0, c0)), ["input", "h0", "c0"]
    exported = m
    if lengths:
        lens = torch.tensor(lengths, dtype=torch.int64)
        exported = Packed(m, T).eval()
        args, names = (x, lens), ["input", "lengths"]
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    torch.onnx.export(exported, args, os.path.join(d, "model.onnx"), input_names=names,
                      output_names=["output", "h_n", "c_n"], opset_version=opset,
                      do_constant_folding=True)
    with torch.no_grad():
        md = m.double()
        if lengths:
            y, hn, cn = Packed(md, T)(x.double(), lens)
        elif state:
            y, (hn, cn) = md(x.double(), (h0.double(), c0.double()))
        else:
            y, (hn, cn) = md(x.double())
    ins = [x] + ([h0, c0] if state else []) + ([lens] if lengths else [])
    for k, (n, t) in enumerate(zip(names, ins)):
        tp = onnx.numpy_helper.from_array(t.numpy(), n)
        open(os.path.join(d, "test_data_set_0", "input_%d.pb" % k), "wb").write(tp.SerializeToString())
    for k, (n, t) in enumerate(zip(["output", "h_n", "c_n"], [y, hn, cn])):
        tp = onnx.numpy_helper.from_array(t.float().numpy(), n)
        open(os.path.join(d, "test_data_set_0", "output_%d.pb" % k), "wb").write(tp.SerializeToString())
    g = onnx.load(os.path.join(d, "model.onnx")).graph
    print("%-24s %d nodes: %s" % (name, len(g.node), " ".join(sorted({n.op_type for n in g.node}))))


def corpus():
    """Seeds for fuzz/fuzz_onnx.c: one-node LSTM graphs made with
    onnx.helper, each using other attributes and inputs, and TensorProtos."""
    import numpy as np
    from onnx import TensorProto, helper
    d = os.path.join(HERE, "..", "fuzz", "corpus", "onnx")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(1)
    H, I, D = 2, 3, 2

    def model(name, attrs, inputs, opset=14, layout=0):
        names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"][:len(inputs)]
        shapes = {"W": (D, 4 * H, I), "R": (D, 4 * H, H), "B": (D, 8 * H), "P": (D, 3 * H)}
        inits = [onnx.numpy_helper.from_array(rng.standard_normal(shapes[n]).astype(np.float32), n)
                 for n, use in zip(names, inputs) if use == "init"]
        ins = [n if use else "" for n, use in zip(names, inputs)]
        gin = [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, None)
               for n, use in zip(names, inputs) if use == "input"]
        node = helper.make_node("LSTM", ins, ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=H,
                                direction="bidirectional", **attrs)
        g = helper.make_graph([node], name, gin, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                  for o in ["Y", "Y_h", "Y_c"]], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        open(os.path.join(d, name + ".onnx"), "wb").write(m.SerializeToString())

    model("full", {"clip": 2.5, "input_forget": 1}, ["input", "init", "init", "init", "input", "input", "input", "init"])
    model("layout1", {"layout": 1}, ["input", "init", "init", "init", "", "input", "input"])
    model("opset7", {}, ["input", "init", "init"], opset=7)
    model("activations", {"activations": ["Sigmoid", "Tanh", "Tanh"] * 2}, ["input", "init", "init"])
    t = onnx.numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float16), "half")
    open(os.path.join(d, "tensor_f16.pb"), "wb").write(t.SerializeToString())
    t = helper.make_tensor("ints", TensorProto.INT64, [3], [1, 2, 3])
    open(os.path.join(d, "tensor_i64.pb"), "wb").write(t.SerializeToString())
    for c in ["uni1_opset9", "bi1_opset7", "bi2_bf_state_opset14", "bi2_packed_opset14"]:
        shutil.copy(os.path.join(OUT, c, "model.onnx"), os.path.join(d, "torch_" + c + ".onnx"))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, c in CASES.items():
        write(name, *c)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# written by tests/gen_onnx_torch_fixtures.py: one case per line\n")
        for name in CASES:
            f.write(name + "\n")
    corpus()


if __name__ == "__main__":
    main()
