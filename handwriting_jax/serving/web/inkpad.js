// The "my hand" canvas of both pages (the `serve` app's page.html and the static site's app.js): strokes drawn
// with a pointer, as lists of [x, y] canvas pixels (y down), redrawn on every move.

export function inkPad(canvas) {
  let current = null;
  const pad = {
    strokes: [],
    redraw() {
      const g = canvas.getContext("2d");
      g.clearRect(0, 0, canvas.width, canvas.height);
      g.lineWidth = 2; g.lineCap = "round"; g.lineJoin = "round"; g.strokeStyle = "#123";
      for (const s of pad.strokes) {
        g.beginPath();
        s.forEach((p, i) => (i ? g.lineTo(p[0], p[1]) : g.moveTo(p[0], p[1])));
        if (s.length === 1) g.lineTo(s[0][0] + 0.1, s[0][1]);
        g.stroke();
      }
    },
    set(strokes) { pad.strokes = strokes; pad.redraw(); },
    clear() { pad.set([]); },
  };
  const at = (ev) => {
    const box = canvas.getBoundingClientRect();
    return [(ev.clientX - box.left) * canvas.width / box.width, (ev.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (ev) => {
    current = [at(ev)]; pad.strokes.push(current); canvas.setPointerCapture(ev.pointerId); pad.redraw();
  });
  canvas.addEventListener("pointermove", (ev) => { if (current) { current.push(at(ev)); pad.redraw(); } });
  const end = () => { current = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return pad;
}
