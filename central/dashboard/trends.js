// Trend plots drawn on a canvas: lines per series over a shared time axis.

export function drawTrend(canvas, { since, until, series, yMin, yMax, band }) {
  const ratio = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const style = getComputedStyle(canvas);
  const left = 44;
  const bottom = height - 20;
  const x = (t) => left + ((t - since) / (until - since)) * (width - left - 8);
  const y = (v) => bottom - ((v - yMin) / (yMax - yMin)) * (bottom - 8);

  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = style.color;
  ctx.strokeStyle = style.borderColor || "#666";
  ctx.lineWidth = 1;
  for (let step = 0; step <= 4; step += 1) {
    const value = yMin + ((yMax - yMin) * step) / 4;
    ctx.globalAlpha = 0.3;
    ctx.beginPath();
    ctx.moveTo(left, y(value));
    ctx.lineTo(width - 8, y(value));
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillText(String(Math.round(value)), 4, y(value) + 4);
  }
  const hours = (until - since) / 3600000;
  for (let h = 0; h <= hours; h += 1) {
    const t = until - h * 3600000;
    const label = h === 0 ? "now" : `-${h} h`;
    ctx.textAlign = h === 0 ? "right" : "center";
    ctx.fillText(label, h === 0 ? width - 8 : x(t), height - 4);
  }
  ctx.textAlign = "left";
  if (series.every((line) => line.points.length === 0)) {
    ctx.fillText("no values in this period", left + 8, 24);
  }

  if (band) {
    ctx.globalAlpha = 0.25;
    ctx.fillStyle = band.color;
    for (const point of band.points) {
      ctx.fillRect(x(point.t) - 1, y(point.max), 3, Math.max(1, y(point.min) - y(point.max)));
    }
    ctx.globalAlpha = 1;
  }
  for (const line of series) {
    ctx.strokeStyle = line.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let previous = null;
    for (const point of line.points) {
      // A gap of more than five minutes between values is drawn as a gap.
      if (previous === null || point.t - previous > 300000) ctx.moveTo(x(point.t), y(point.v));
      else ctx.lineTo(x(point.t), y(point.v));
      previous = point.t;
    }
    ctx.stroke();
    // Sparse series such as minute statistics also get a dot per value, so a
    // single minute of data is visible.
    if (line.points.length <= 240) {
      ctx.fillStyle = line.color;
      for (const point of line.points) ctx.fillRect(x(point.t) - 1.5, y(point.v) - 1.5, 3, 3);
    }
  }
}
