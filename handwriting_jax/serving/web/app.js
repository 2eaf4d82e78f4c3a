// The page: controls, the drawing canvas ("my hand"), the pen animation and the downloads. The network runs in
// worker.js; `window.handwritingPage` is what tests drive (write, trace, the shared functions).

import * as hw from "./handwriting.js";
import { inkPad } from "./inkpad.js";

const $ = (id) => document.getElementById(id);
const LINE_WIDTH = 40;  // characters per written line, wrapped at spaces
const MAX_PRIME_POINTS = 5000;
const worker = new Worker("worker.js", { type: "module" });
let meta = null, styles = [], nextId = 1;
const pending = new Map();  // request id -> {resolve, reject, onMessage}
const pad = inkPad($("canvas"));  // the canvas's strokes (pixels, y down)
let written = [];  // per line: raw offsets received so far
let shown = [];  // per line: how many of them the pen has drawn
let svgText = "";

function request(msg, onMessage) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onMessage });
    worker.postMessage({ ...msg, id });
  });
}

let markReady;
const ready = new Promise((resolve) => (markReady = resolve));
worker.onmessage = (ev) => {
  const m = ev.data;
  if (m.type === "ready") {
    meta = m.meta;
    $("status").textContent = `writer step ${meta.step}, loaded in ${Math.round(m.ms)} ms; characters: ${meta.alphabet.replace(hw.END_CHAR, "")}`;
    $("write").disabled = false;
    markReady();
    return;
  }
  const p = pending.get(m.id);
  if (m.type === "error") {
    if (p) { pending.delete(m.id); p.reject(new Error(m.message)); } else $("status").textContent = m.message;
    return;
  }
  if (!p) return;
  if (p.onMessage) p.onMessage(m);
  if (m.type === "done" || m.type === "trace") { pending.delete(m.id); p.resolve(m); }
};

async function loadStyles() {
  const all = await (await fetch("model.json")).json();
  styles = all.styles;
  const sel = $("style");
  sel.add(new Option("free (no style)", ""));
  styles.forEach((s, i) => sel.add(new Option(`${s.name}: ${s.text.slice(0, 24)}`, String(i))));
  sel.add(new Option("my hand", "hand"));
}

// "my hand": pixels with y down -> the writer's normalised offsets, or an error naming what is wrong.
function handPrime() {
  const text = $("handtext").value.trim().split(/\s+/).join(" ");
  if (!pad.strokes.length) throw new Error("write a line on the canvas first");
  if (!text) throw new Error("type what the line on the canvas says");
  const bad = hw.unknownChars(text, meta.alphabet);
  if (bad.length) throw new Error(`what the line says holds characters the writer cannot read: ${bad.join(" ")}`);
  const pts = pad.strokes.flat();
  if (pts.length > MAX_PRIME_POINTS) throw new Error(`the drawn line has ${pts.length} points; at most ${MAX_PRIME_POINTS}`);
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  if (Math.max(...ys) - Math.min(...ys) < 5 || Math.max(...xs) - Math.min(...xs) < 10) {
    throw new Error("the drawn line is too small: write a whole line of a few words");
  }
  const raw = hw.strokesToTrainingUnits(pad.strokes.map((s) => s.map((p) => [p[0], -p[1]])), meta.line_height, meta.point_step);
  return { offsets: hw.normalise(raw, meta.mean, meta.std), text };
}

function chosenPrime() {
  const v = $("style").value;
  if (v === "") return null;
  if (v === "hand") return handPrime();
  const s = styles[Number(v)];
  return { offsets: s.offsets, text: s.text };
}

function wrap(text) {
  const lines = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > LINE_WIDTH) { lines.push(line); line = word; } else line = line ? `${line} ${word}` : word;
    }
    if (line) lines.push(line);
  }
  return lines;
}

function render() {
  const lines = written.map((offs, i) => hw.offsetsToStrokes(offs.slice(0, shown[i])));
  svgText = hw.pageSvg(lines, { lineHeight: meta.line_height, width: parseFloat($("width").value) });
  $("out").innerHTML = svgText;
  $("out").querySelector("svg").setAttribute("id", "written");
}

// The pen: `speed` points per frame, per line in order, until every point received so far is drawn.
let animating = false, writingDone = true;
function animate() {
  if (animating) return;
  animating = true;
  const frame = () => {
    let budget = parseInt($("speed").value);
    for (let i = 0; i < written.length && budget > 0; i++) {
      const more = Math.min(budget, written[i].length - shown[i]);
      shown[i] += more;
      budget -= more;
    }
    render();
    const behind = written.some((offs, i) => shown[i] < offs.length);
    if (behind || !writingDone) requestAnimationFrame(frame);
    else { animating = false; finish(); }
  };
  requestAnimationFrame(frame);
}

function finish() {
  $("dlsvg").href = URL.createObjectURL(new Blob([svgText], { type: "image/svg+xml" }));
  $("dlsvg").hidden = false;
  pngBlob(svgText).then((blob) => { $("dlpng").href = URL.createObjectURL(blob); $("dlpng").hidden = false; });
}

function pngBlob(svg) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = img.width * 2; c.height = img.height * 2;
      const g = c.getContext("2d");
      g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
      g.drawImage(img, 0, 0, c.width, c.height);
      c.toBlob(resolve, "image/png");
    };
    img.onerror = () => reject(new Error("the page could not be drawn as PNG"));
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
  });
}

// Write `text` (wrapped into lines); resolves when the network has finished, with its timings.
async function write(text, options = {}) {
  const lines = wrap(text);
  if (!lines.length) throw new Error("type something to write");
  return writeLines(lines, options);
}

// Write each of `lines` as one line; resolves with the lines, the time the network took (all, and until the first
// line was done) and each line's raw offsets.
async function writeLines(lines, { bias, seed, prime } = {}) {
  await ready;
  for (const line of lines) {
    const bad = hw.unknownChars(line, meta.alphabet);
    if (bad.length) throw new Error(`the writer cannot write ${bad.map((c) => JSON.stringify(c)).join(", ")}`);
  }
  written = lines.map(() => []);
  shown = lines.map(() => 0);
  writingDone = false;
  $("dlsvg").hidden = true; $("dlpng").hidden = true;
  const t0 = performance.now(), firstLineMs = [];
  animate();
  try {
    const done = await request({ type: "write", lines, bias, seed, prime }, (m) => {
      if (m.type === "ink") written[m.line].push(...m.points);
      if (m.type === "line") { written[m.line] = m.offsets; firstLineMs.push(performance.now() - t0); }
    });
    return { lines, ms: done.ms, firstLineMs: firstLineMs[0], steps: written.map((w) => w.length), offsets: written };
  } finally {
    writingDone = true;
  }
}

async function onWrite() {
  $("error").textContent = "";
  $("write").disabled = true;
  try {
    const res = await write($("text").value, {
      bias: parseFloat($("bias").value), seed: parseInt($("seed").value || "0"), prime: chosenPrime(),
    });
    $("status").textContent = `wrote ${res.lines.length} line(s) in ${(res.ms / 1000).toFixed(2)} s`;
  } catch (e) {
    $("error").textContent = e.message;
  } finally {
    $("write").disabled = false;
  }
}

$("bias").oninput = () => ($("biasval").textContent = $("bias").value);
$("width").oninput = () => { if (meta && written.length) { render(); if (writingDone && !animating) finish(); } };
$("style").onchange = () => ($("hand").style.display = $("style").value === "hand" ? "block" : "none");
$("write").onclick = onWrite;
$("clear").onclick = () => pad.clear();
loadStyles();

window.handwritingPage = {
  hw, ready, write, writeLines, handPrime, pngBlob,
  trace: (text, bias, prime, uniforms) => ready.then(() => request({ type: "trace", text, bias, prime, uniforms })),
  get svg() { return svgText; },
  get meta() { return meta; },
  setDrawn(strokes) { pad.set(strokes); },
};
