// ort_run.js - runs an ONNX model written by `lstm export` in ONNX Runtime
// (the onnxruntime-node package) on the inputs of a safetensors file and
// compares its outputs with that file's (PyTorch's, for tests/fixtures) and,
// when given, with another safetensors file's (lstm forward's).
//
//   node tests/ort_run.js ORT_DIR MODEL.onnx DATA.safetensors [LSTM_OUT.safetensors]
//
// ORT_DIR is the onnxruntime-node package directory (scripts/install-ort.sh
// puts one in .ort/node_modules/onnxruntime-node). DATA holds `input` and,
// as the model's inputs ask, `h0`, `c0`, `lengths`; and the expected
// `output`, `h_n`, `c_n` (a task model's: `ids.<feature>`, `lengths`; and
// `probs`): every output of the model that DATA has is compared. Prints a
// line per check and "N passed, N failed".
'use strict';
const fs = require('fs');

function readSafetensors(path) {
  const buf = fs.readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = t.data_offsets;
    const bytes = buf.subarray(base + b, base + e);
    let data;
    if (t.dtype === 'F32') {
      data = new Float32Array(bytes.length / 4);
      for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(4 * i);
    } else if (t.dtype === 'I64') {
      data = new Int32Array(bytes.length / 8);
      for (let i = 0; i < data.length; i++) data[i] = Number(bytes.readBigInt64LE(8 * i));
    } else {
      continue;
    }
    out[name] = { dims: t.shape, data };
  }
  return out;
}

async function main() {
  const [ortDir, model, dataPath, lstmPath] = process.argv.slice(2);
  const ort = require(ortDir);
  const threads = Number(process.env.ORT_THREADS || 1);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
  });
  const data = readSafetensors(dataPath);
  const feeds = {};
  for (const name of session.inputNames) {
    const t = data[name];
    if (!t) throw new Error(`${dataPath}: no tensor '${name}' for the model's input`);
    feeds[name] = name === 'lengths' ? new ort.Tensor('int32', Int32Array.from(t.data), t.dims)
                : name.startsWith('ids.') ? new ort.Tensor('int64', BigInt64Array.from(t.data, BigInt), t.dims)
                : new ort.Tensor('float32', t.data, t.dims);
  }
  const res = await session.run(feeds);
  let passed = 0, failed = 0, compared = 0;
  const refs = [[dataPath, data]];
  if (lstmPath) refs.push([lstmPath, readSafetensors(lstmPath)]);
  for (const name of session.outputNames) {
    const got = res[name];
    for (const [path, ref] of refs) {
      const want = ref[name];
      if (!want) continue;
      compared++;
      let worst = -1, excess = 0;
      const same = got.dims.length === want.dims.length && got.dims.every((d, i) => d === want.dims[i]);
      if (same) {
        for (let i = 0; i < want.data.length; i++) {
          const e = Math.abs(got.data[i] - want.data[i]) - (1e-5 + 1e-4 * Math.abs(want.data[i]));
          if (!(e <= excess)) { excess = e; worst = i; }
        }
      }
      if (same && worst < 0) {
        passed++;
        console.log(`ok ${model}: ${name} as ${path}`);
      } else {
        failed++;
        console.log(`FAIL ${model}: ${name} differs from ${path}` + (same
          ? ` at [${worst}]: ORT ${got.data[worst]}, expected ${want.data[worst]}`
          : `: ORT shape [${got.dims}], expected [${want.dims}]`));
      }
    }
  }
  if (!compared) { failed++; console.log(`FAIL ${dataPath}: none of the model's outputs to compare`); }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
