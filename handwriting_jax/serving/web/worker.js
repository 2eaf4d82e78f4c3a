// The network in a web worker: onnxruntime-web runs model.onnx (one step of the synthesis network, B = 1) and this
// loop samples a line point by point (handwriting_jax/model/sampling.py's scan body), posting the ink as it goes.
//
// Messages in:  {type: "write", id, lines: [text], bias, seed, prime: {offsets, text} | null}
//               {type: "trace", id, text, bias, prime, uniforms: [4 per step]}   (the parity test's fixed draws)
// Messages out: {type: "ready", ms, meta} | {type: "ink", id, line, points} | {type: "line", id, line, offsets, steps,
//               ms} | {type: "done", id, ms} | {type: "trace", id, steps: [...]} | {type: "error", id, message}

import * as ort from "./ort/ort.wasm.min.mjs";
import * as hw from "./handwriting.js";

let session = null, meta = null;

async function init() {
  const t0 = performance.now();
  meta = await (await fetch("model.json")).json();
  const gz = await fetch("ort/ort-wasm-simd-threaded.wasm.gz");
  if (!gz.ok) throw new Error(`ort/ort-wasm-simd-threaded.wasm.gz: HTTP ${gz.status}`);
  ort.env.wasm.wasmBinary = await new Response(gz.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation headers a plain static host does not send
  session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  return performance.now() - t0;
}

const zeros = (n) => new Float32Array(n);

// The recurrent state of one line, zero at its start (NetworkState).
function zeroState() {
  const lh = meta.num_layers * meta.hidden;
  return { kappa: zeros(meta.num_window_gaussians), w: zeros(meta.alphabet_size), h: zeros(lh), c: zeros(lh) };
}

// One network step: x [3], the line's text and bias tensors and the state -> {mix, phi, state}.
async function step(x, charsTensor, biasTensor, state) {
  const L = meta.num_layers, H = meta.hidden;
  const out = await session.run({
    x: new ort.Tensor("float32", Float32Array.from(x), [1, 3]),
    chars: charsTensor,
    bias: biasTensor,
    kappa: new ort.Tensor("float32", state.kappa, [1, meta.num_window_gaussians]),
    w: new ort.Tensor("float32", state.w, [1, meta.alphabet_size]),
    h: new ort.Tensor("float32", state.h, [L, 1, H]),
    c: new ort.Tensor("float32", state.c, [L, 1, H]),
  });
  const mix = {
    logPi: out.log_pi.data, mu: out.mu.data, logSigma: out.log_sigma.data, rho: out.rho.data,
    eosLogit: out.eos_logit.data[0],
  };
  const next = { kappa: out.kappa_out.data, w: out.w_out.data, h: out.h_out.data, c: out.c_out.data };
  return { mix, phi: out.phi.data, state: next };
}

// Sample one line of `text` (primed with `prime` = {offsets: normalised [[dx, dy, eos]], text}, or unprimed):
// returns {offsets (normalised, after the prime's lead-in is cut), steps, trace}. `draw()` gives the next uniform;
// `onInk(points)` receives the kept normalised points as they come.
async function sampleLine(text, bias, prime, draw, onInk, keepTrace = false) {
  const full = hw.conditioningText(text, prime ? prime.text : null, meta.alphabet);
  const ids = hw.windowIds(full, meta.alphabet);
  if (ids.length > meta.max_chars) {
    throw new Error(`a line holds at most ${meta.max_chars} characters with the style's text; this one has ${ids.length}`);
  }
  const chars = new Int32Array(meta.max_chars);
  chars.set(ids);
  const charsTensor = new ort.Tensor("int32", chars, [1, meta.max_chars]);
  const biasTensor = new ort.Tensor("float32", Float32Array.of(bias), [1]);
  let state = zeroState(), x = meta.start_point;
  if (prime) {  // teacher forcing (sampling.prime_state): inputs START, prime[0..P-2]; sampling starts from prime[P-1]
    const inputs = [meta.start_point, ...prime.offsets.slice(0, -1)];
    for (const inp of inputs) state = (await step(inp, charsTensor, biasTensor, state)).state;
    x = prime.offsets[prime.offsets.length - 1];
  }
  const prefix = full.length - text.length, cap = Math.max(1, Math.ceil(meta.max_steps_per_char * text.length));
  const kept = [], trace = [];
  let passed = false, reading = !prime, sent = 0, track = hw.startTrack();
  for (let t = 0; t < cap; t++) {
    const r = await step(x, charsTensor, biasTensor, state);
    state = r.state;
    passed = passed || hw.windowFinished(r.phi, full.length);
    const point = hw.drawPoint(r.mix, [draw(), draw(), draw(), draw()]);
    const end = hw.lineEnd(meta.stop_rule, passed, point, x[2], false, t + 1 >= cap, t === 0, track,
      r.phi[full.length - 1], meta.std[0], meta.mean[0]);
    track = end.track;
    point[2] = end.eos;
    if (keepTrace) {
      trace.push({ logPi: Array.from(r.mix.logPi), mu: Array.from(r.mix.mu), logSigma: Array.from(r.mix.logSigma),
        rho: Array.from(r.mix.rho), eosLogit: r.mix.eosLogit, phi: Array.from(r.phi), point: point.slice(),
        valid: end.valid });
    }
    if (end.valid) {
      // A primed line's first points finish the prime (sampling.prime_lead_steps): kept from the first step the
      // window reads the new text; a line whose window never gets there is kept whole (below).
      reading = reading || hw.readingPosition(r.phi, full.length) >= prefix;
      kept.push({ point, reading });
      if (reading && onInk) {
        const fresh = kept.slice(sent).filter((k) => k.reading).map((k) => k.point);
        sent = kept.length;
        if (fresh.length) onInk(fresh);
      }
    }
    x = point;
    if (end.endsNow) break;
  }
  const anyReading = kept.some((k) => k.reading);
  const offsets = kept.filter((k) => k.reading || !anyReading).map((k) => k.point);
  if (!anyReading && onInk && offsets.length) onInk(offsets);
  return { offsets, steps: kept.length, trace };
}

function lineSeed(seed, index) {
  return (Math.imul(seed >>> 0, 0x9e3779b1) + index * 0x85ebca6b + 1) >>> 0;
}

async function write(msg) {
  const t0 = performance.now();
  for (let i = 0; i < msg.lines.length; i++) {
    const t1 = performance.now();
    const draw = hw.uniforms(lineSeed(msg.seed, i));
    const onInk = (points) => postMessage({ type: "ink", id: msg.id, line: i, points: hw.denormalise(points, meta.mean, meta.std) });
    const res = await sampleLine(msg.lines[i], msg.bias, msg.prime, draw, onInk);
    postMessage({ type: "line", id: msg.id, line: i, offsets: hw.denormalise(res.offsets, meta.mean, meta.std),
      steps: res.steps, ms: performance.now() - t1 });
  }
  postMessage({ type: "done", id: msg.id, ms: performance.now() - t0 });
}

async function traceLine(msg) {
  let k = 0;
  const draw = () => (k < msg.uniforms.length ? msg.uniforms[k++] : 0.5);
  const res = await sampleLine(msg.text, msg.bias, msg.prime, draw, null, true);
  postMessage({ type: "trace", id: msg.id, steps: res.trace, offsets: res.offsets });
}

const ready = init().then(
  (ms) => postMessage({ type: "ready", ms, meta: { ...meta, styles: undefined } }),
  (e) => postMessage({ type: "error", id: null, message: `the network did not load: ${e.message || e}` }),
);

onmessage = async (ev) => {
  await ready;
  const msg = ev.data;
  try {
    if (!session) throw new Error("the network did not load");
    if (msg.type === "write") await write(msg);
    else if (msg.type === "trace") await traceLine(msg);
  } catch (e) {
    postMessage({ type: "error", id: msg.id, message: e.message || String(e) });
  }
};
