// The writer's loop in JavaScript: text encoding, drawn ink to the network's units, the mixture draw, the stop rule,
// and drawing. Pure functions shared by the page and its worker; each mirrors a Python function named beside it
// (handwriting_jax/...), and tests/test_web_export.py checks them against those in headless Chromium.

export const PAD_ID = 0;
export const FIRST_CHAR_ID = 2;

// Characters of `text` the writer cannot write (alphabet.check_known), each once, in order.
export function unknownChars(text, alphabet) {
  const seen = [];
  for (const ch of text) if ((!alphabet.includes(ch) || ch === END_CHAR) && !seen.includes(ch)) seen.push(ch);
  return seen;
}

// Ids of `text` (Alphabet.encode): the alphabet's characters take ids 2, 3, ...; throws naming unknown characters.
export function encodeText(text, alphabet) {
  const bad = unknownChars(text, alphabet);
  if (bad.length) throw new Error(`the writer cannot write ${bad.map((c) => JSON.stringify(c)).join(", ")}`);
  return Array.from(text, (ch) => alphabet.indexOf(ch) + FIRST_CHAR_ID);
}

// The end-of-text symbol (data/end_of_text.py): a writer trained with it (its alphabet holds it) reads it after the
// text, at position U+1 where the stop rule looks; users cannot write it.
export const END_CHAR = "\x03";

// Ids the window reads for `text` (end_of_text.conditioned, then Alphabet.encode): the text's, then the end symbol's
// when the alphabet has it; throws naming characters the writer cannot write.
export function windowIds(text, alphabet) {
  const ids = encodeText(text, alphabet);
  if (alphabet.includes(END_CHAR)) ids.push(alphabet.indexOf(END_CHAR) + FIRST_CHAR_ID);
  return ids;
}

// What the window reads when primed (sampling.conditioning_texts): prime text, a space, the text.
export function conditioningText(text, primeText, alphabet) {
  if (primeText === null || primeText === undefined) return text;
  const sep = alphabet.includes(" ") && !primeText.endsWith(" ") ? " " : "";
  return primeText + sep + text;
}

// Pen strokes (arrays of [x, y], y up) -> raw offsets [[dx, dy, eos], ...] in the writer's units
// (strokes.strokes_to_training_units): scaled to `lineHeight` tall, resampled every `pointStep` along each stroke.
export function strokesToTrainingUnits(strokes, lineHeight, pointStep) {
  const kept = strokes.filter((s) => s.length);
  if (!kept.length) throw new Error("no ink: write a line first");
  const all = kept.flat();
  const ys = all.map((p) => p[1]);
  const height = Math.max(...ys) - Math.min(...ys);
  if (!(height > 0)) throw new Error("the ink has no height: write a whole line of a few words");
  const k = lineHeight / height, [x0, y0] = all[0];
  const points = [];
  for (const s of kept) {
    const a = s.map((p) => [(p[0] - x0) * k, (p[1] - y0) * k]);
    const arc = [0];
    for (let i = 1; i < a.length; i++) arc.push(arc[i - 1] + Math.hypot(a[i][0] - a[i - 1][0], a[i][1] - a[i - 1][1]));
    const total = arc[arc.length - 1];
    const n = Math.max(Math.round(total / pointStep) + 1, 1);
    if (n === 1 || total === 0) { points.push([a[0][0], a[0][1], 1]); continue; }
    let j = 0;
    for (let i = 0; i < n; i++) {
      const at = (total * i) / (n - 1);
      while (j < arc.length - 2 && arc[j + 1] < at) j++;
      const span = arc[j + 1] - arc[j], f = span > 0 ? Math.min(Math.max((at - arc[j]) / span, 0), 1) : 0;
      points.push([a[j][0] + f * (a[j + 1][0] - a[j][0]), a[j][1] + f * (a[j + 1][1] - a[j][1]), i === n - 1 ? 1 : 0]);
    }
  }
  return points.map((p, i) => (i ? [p[0] - points[i - 1][0], p[1] - points[i - 1][1], p[2]] : [0, 0, p[2]]));
}

// Raw offsets -> the network's units (NormStats.normalise) and back (NormStats.denormalise).
export function normalise(offsets, mean, std) {
  return offsets.map((o) => [(o[0] - mean[0]) / std[0], (o[1] - mean[1]) / std[1], o[2]]);
}
export function denormalise(offsets, mean, std) {
  return offsets.map((o) => [o[0] * std[0] + mean[0], o[1] * std[1] + mean[1], o[2]]);
}

// One point from the mixture of one step and four uniform draws u in [0, 1): the component is the first whose
// cumulative π exceeds u[0]; (n1, n2) standard normals from u[1], u[2] (Box-Muller); eos when u[3] < sigmoid(ê).
// `mix` holds typed arrays logPi [M], mu [M, 2], logSigma [M, 2], rho [M] and the number eosLogit.
export function drawPoint(mix, u) {
  const m = mix.logPi.length;
  let j = m - 1, acc = 0;
  for (let i = 0; i < m; i++) {
    acc += Math.exp(mix.logPi[i]);
    if (u[0] < acc) { j = i; break; }
  }
  const r = Math.sqrt(-2 * Math.log(1 - u[1])), n1 = r * Math.cos(2 * Math.PI * u[2]), n2 = r * Math.sin(2 * Math.PI * u[2]);
  const s1 = Math.exp(mix.logSigma[2 * j]), s2 = Math.exp(mix.logSigma[2 * j + 1]), rho = mix.rho[j];
  const x1 = mix.mu[2 * j] + s1 * n1;
  const x2 = mix.mu[2 * j + 1] + s2 * (rho * n1 + Math.sqrt(Math.max(1 - rho * rho, 0)) * n2);
  const eos = u[3] < 1 / (1 + Math.exp(-mix.eosLogit)) ? 1 : 0;
  return [x1, x2, eos];
}

// The paper's stop rule (sampling.window_finished): φ(t, U+1) > φ(t, u) for every u <= U; `phi` holds φ(t, u) for
// u = 1..V (index u - 1), `length` is U.
export function windowFinished(phi, length) {
  let best = -Infinity;
  for (let u = 0; u < length; u++) best = Math.max(best, phi[u]);
  return phi[length] > best;
}

// The "finish" stop rule's limit (sampling.LATE_STROKES): strokes a line may begin after the window passed its text.
export const LATE_STROKES = 3;

// A line's track before its first point (sampling.start_track): pen x and right edge of the ink in raw units, late
// strokes, the largest φ on the last character so far, whether the stroke under way is a stray one.
export function startTrack() {
  return { x: 0, right: 0, late: 0, peak: 0, stray: false };
}

// Where a line ends at one step (sampling.line_end): {valid, endsNow, stopped, eos, track}. `point` is normalised;
// `dxScale * dx + dxShift` is its raw x offset; `phiLast` is this step's φ on the text's last character.
export function lineEnd(stopRule, passed, point, prevEos, done, atCap, firstStep, track, phiLast, dxScale, dxShift) {
  const penUp = prevEos > 0.5, pointEos = point[2];
  const x = Math.fround(track.x + Math.fround(Math.fround(point[0] * dxScale) + dxShift));
  const clear = x > track.right;
  let stop = passed;
  if (stopRule === "lift") stop = passed && (pointEos > 0.5 || penUp);
  if (stopRule === "finish") stop = passed && (penUp ? clear || track.late >= LATE_STROKES : track.stray);
  const stopped = !done && stop, endsNow = !done && (stop || atCap);
  const stray = stopped && penUp && !firstStep;
  const valid = !done && !stray, starts = valid && penUp;
  const next = {
    x: valid ? x : track.x,
    right: valid ? Math.max(track.right, x) : track.right,
    late: track.late + (starts && passed && !firstStep ? 1 : 0),
    peak: Math.max(track.peak, phiLast),
    stray: starts ? phiLast < track.peak && clear : track.stray,
  };
  return { valid, endsNow, stopped, eos: endsNow ? 1 : pointEos, track: next };
}

// Index of the text position the window reads most at a step (argmax of φ over the text's `length` positions).
export function readingPosition(phi, length) {
  let best = 0;
  for (let u = 1; u < length; u++) if (phi[u] > phi[best]) best = u;
  return best;
}

// A small seeded generator of uniforms in [0, 1) (mulberry32): the page's draws are repeatable for a seed.
export function uniforms(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Raw offsets -> pen-down strokes of absolute points (strokes.offsets_to_strokes), y up.
export function offsetsToStrokes(offsets) {
  const strokes = [];
  let x = 0, y = 0, cur = [];
  for (const o of offsets) {
    x += o[0]; y += o[1];
    cur.push([x, y]);
    if (o[2] > 0.5) { strokes.push(cur); cur = []; }
  }
  if (cur.length) strokes.push(cur);
  return strokes;
}

// SVG path data of one stroke, smooth through its points (Catmull-Rom as cubic Béziers), y flipped for SVG.
export function strokePath(s, dx, dy, digits = 2) {
  const f = (v) => v.toFixed(digits);
  const p = s.map((q) => [q[0] + dx, -q[1] + dy]);
  if (p.length === 1) return `M${f(p[0][0])} ${f(p[0][1])}l0 0`;
  let d = `M${f(p[0][0])} ${f(p[0][1])}`;
  for (let i = 0; i < p.length - 1; i++) {
    const a = p[Math.max(i - 1, 0)], b = p[i], c = p[i + 1], e = p[Math.min(i + 2, p.length - 1)];
    const c1 = [b[0] + (c[0] - a[0]) / 6, b[1] + (c[1] - a[1]) / 6], c2 = [c[0] - (e[0] - b[0]) / 6, c[1] - (e[1] - b[1]) / 6];
    d += `C${f(c1[0])} ${f(c1[1])} ${f(c2[0])} ${f(c2[1])} ${f(c[0])} ${f(c[1])}`;
  }
  return d;
}

// Bounds [xmin, xmax, ymin, ymax] of strokes (y up); a line with no ink has none (null).
export function bounds(strokes) {
  const pts = strokes.flat();
  if (!pts.length) return null;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  return [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
}

// An SVG page of lines of strokes (each line raw-unit strokes, y up), stacked with `spacing` between baselines:
// one <path> per stroke, like data/draw.lines_to_svg.
export function pageSvg(lines, { lineHeight, width = 1, color = "black" }) {
  const spacing = 1.6 * lineHeight, margin = 0.3 * lineHeight;
  const paths = [];
  let xmax = lineHeight, ymin = 0, ymax = 0;
  lines.forEach((strokes, i) => {
    const b = bounds(strokes);
    if (!b) return;
    const dx = -b[0], dy = i * spacing;
    xmax = Math.max(xmax, b[1] - b[0]);
    ymin = Math.min(ymin, -b[3] + dy);
    ymax = Math.max(ymax, -b[2] + dy);
    paths.push(`<g id="line-${i}">` + strokes.map((s) => `<path d="${strokePath(s, dx, dy)}"/>`).join("") + "</g>");
  });
  const w = xmax + 2 * margin, h = ymax - ymin + 2 * margin;
  const sw = (0.025 * lineHeight * width).toFixed(2);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="${-margin} ${(ymin - margin).toFixed(2)} ${w.toFixed(2)} ` +
    `${h.toFixed(2)}" width="${Math.round(w)}" height="${Math.round(h)}"><g fill="none" stroke="${color}" ` +
    `stroke-width="${sw}" stroke-linecap="round" stroke-linejoin="round">${paths.join("")}</g></svg>`
  );
}
