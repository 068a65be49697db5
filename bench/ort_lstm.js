#!/usr/bin/env node
// ort_lstm.js - times ONNX Runtime (onnxruntime-node, CPU) on the model that
// `lstm export` writes for an nn.LSTM with random weights, with the options
// and the result line of `lstm bench`, so bench/compare.sh can set them side
// by side. infer: one run over (T, B, I) from the zero state; stream: one run
// per step over (1, B, I) with h and c fed back, the time averaged over T
// steps (as lstm bench --mode stream).
//
//   bench/ort_lstm.js --mode infer --input 256 --hidden 256 --batch 1 --steps 150 --threads 2 --json
//
// ONNX Runtime: $LSTM_ORT or .ort/node_modules/onnxruntime-node
// (scripts/install-ort.sh). intraOpNumThreads = --threads, one inter-op
// thread, sequential execution, all graph optimizations.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const opt = { mode: 'infer', input: 256, hidden: 256, layers: 1, batch: 1, steps: 50, threads: 1,
              repeat: 10, json: false, bidirectional: false, lstm: path.join(root, 'lstm') };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i].replace(/^--/, '');
  if (a === 'json' || a === 'bidirectional') opt[a] = true;
  else if (a in opt) opt[a] = typeof opt[a] === 'number' ? Number(argv[++i]) : argv[++i];
  else { console.error(`ort_lstm.js: unknown option --${a}`); process.exit(2); }
}
if (opt.mode !== 'infer' && opt.mode !== 'stream') {
  console.error('ort_lstm.js: --mode infer or stream'); process.exit(2);
}
const ort = require(process.env.LSTM_ORT || path.join(root, '.ort/node_modules/onnxruntime-node'));
const { input: I, hidden: H, layers: L, batch: B, steps: T } = opt;
const D = opt.bidirectional ? 2 : 1;

// a state_dict of random weights, U(-1/sqrt(H), 1/sqrt(H)), written as safetensors
let seed = 1;
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const tensors = [];
for (let k = 0; k < L; k++)
  for (let d = 0; d < D; d++) {
    const s = d ? '_reverse' : '', inSize = k ? D * H : I;
    tensors.push([`weight_ih_l${k}${s}`, [4 * H, inSize]], [`weight_hh_l${k}${s}`, [4 * H, H]],
                 [`bias_ih_l${k}${s}`, [4 * H]], [`bias_hh_l${k}${s}`, [4 * H]]);
  }
const header = {};
let off = 0;
for (const [name, shape] of tensors) {
  const n = shape.reduce((a, b) => a * b, 1) * 4;
  header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n] };
  off += n;
}
let hjson = JSON.stringify(header);
hjson += ' '.repeat((8 - (hjson.length % 8)) % 8);
const buf = Buffer.alloc(8 + hjson.length + off);
buf.writeBigUInt64LE(BigInt(hjson.length), 0);
buf.write(hjson, 8);
const bound = 1 / Math.sqrt(H);
for (let i = 8 + hjson.length; i < buf.length; i += 4) buf.writeFloatLE((2 * rand() - 1) * bound, i);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ort-lstm-'));
const sd = path.join(tmp, 'lstm.safetensors'), model = path.join(tmp, 'lstm.onnx');
fs.writeFileSync(sd, buf);
execFileSync(opt.lstm, ['export', ...(opt.mode === 'stream' ? ['--state'] : []), sd, model]);

function flops(steps) {
  let f = 0;
  for (let l = 0; l < L; l++) f += D * 2 * steps * B * 4 * H * ((l ? D * H : I) + H);
  return f;
}

async function main() {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: opt.threads, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const Tx = opt.mode === 'stream' ? 1 : T;
  const x = new Float32Array(Tx * B * I).map(() => 2 * rand() - 1);
  const input = new ort.Tensor('float32', x, [Tx, B, I]);
  const times = [];
  for (let it = -2; it < opt.repeat; it++) {
    const t0 = process.hrtime.bigint();
    if (opt.mode === 'infer') {
      await session.run({ input });
    } else {
      let h = new ort.Tensor('float32', new Float32Array(L * B * H), [L, B, H]);
      let c = new ort.Tensor('float32', new Float32Array(L * B * H), [L, B, H]);
      for (let s = 0; s < T; s++) {
        const r = await session.run({ input, h0: h, c0: c });
        h = r.h_n, c = r.c_n;
      }
    }
    const dt = Number(process.hrtime.bigint() - t0) * 1e-9;
    if (it >= 0) times.push(opt.mode === 'stream' ? dt / T : dt);
  }
  times.sort((a, b) => a - b);
  const n = times.length;
  const med = n % 2 ? times[(n - 1) / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  const gf = flops(opt.mode === 'stream' ? 1 : T) / med * 1e-9;
  fs.rmSync(tmp, { recursive: true, force: true });
  if (opt.json)
    console.log(JSON.stringify({ impl: 'onnxruntime', version: ort.env.versions ? ort.env.versions.common : '',
                                 mode: opt.mode, threads: opt.threads, ms: med * 1e3, gflops: gf }));
  else
    console.log(`onnxruntime ${opt.mode}: ${(med * 1e3).toFixed(4)} ms${opt.mode === 'stream' ? ' per step' : ''}, ${gf.toFixed(1)} GFLOP/s`);
}

main().catch((e) => { console.error(`ort_lstm.js: ${e.message}`); process.exit(1); });
