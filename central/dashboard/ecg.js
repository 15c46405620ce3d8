// A sweeping ECG trace at paper speed, drawn from vitals.update waveform chunks.
//
// One CSS pixel is 1/96 inch (CSS Values 4), so a millimetre is 96 / 25.4 CSS
// pixels whatever the screen's density; the trace runs at 25 mm/s and 10 mm/mV as
// on ECG paper. Samples are placed by their sample index, so a missing chunk leaves
// a gap in the trace instead of being joined across.

export const PX_PER_MM = 96 / 25.4;
export const PAPER_SPEED_MM_S = 25;
export const GAIN_MM_PER_MV = 10;
const PLAYBACK_DELAY_S = 0.6; // chunks arrive every ~0.25 s; draw a little behind
const MAX_LAG_S = 3; // after a stall (hidden tab) jump ahead instead of catching up
const ERASE_AHEAD_PX = 12;
const BUFFER_SECONDS = 12;

export class EcgStrip {
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.samples = new Map(); // sample index -> microvolts
    this.rate = null;
    this.newestIndex = null;
    this.playhead = null; // fractional sample index being drawn now
    this.lastFrameMs = null;
    this.x = 0;
    this.lastPoint = null;
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = this.canvas.getBoundingClientRect();
    this.width = Math.max(1, width);
    this.height = Math.max(1, height);
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.context.clearRect(0, 0, this.width, this.height);
    this.x = 0;
    this.lastPoint = null;
    this.color = getComputedStyle(this.canvas).color;
  }

  add(segment) {
    if (this.rate !== segment.sample_rate_hz) {
      this.samples.clear();
      this.rate = segment.sample_rate_hz;
      this.playhead = null;
    }
    const first = segment.first_sample_index;
    segment.samples.forEach((count, offset) => {
      this.samples.set(first + offset, count * segment.scale_uv);
    });
    const last = first + segment.samples.length - 1;
    if (this.newestIndex === null || last > this.newestIndex) this.newestIndex = last;
    const oldest = this.newestIndex - BUFFER_SECONDS * this.rate;
    if (this.samples.size > BUFFER_SECONDS * this.rate * 1.5) {
      for (const index of this.samples.keys()) if (index < oldest) this.samples.delete(index);
    }
  }

  // Advance by the frame's elapsed time and draw the samples it covers.
  frame(nowMs) {
    const elapsedS = this.lastFrameMs === null ? 0 : (nowMs - this.lastFrameMs) / 1000;
    this.lastFrameMs = nowMs;
    if (this.rate === null || this.newestIndex === null) return;
    const target = this.newestIndex - PLAYBACK_DELAY_S * this.rate;
    if (this.playhead === null || target - this.playhead > MAX_LAG_S * this.rate) {
      this.playhead = target;
      this.lastPoint = null;
    }
    const step = Math.min(elapsedS, 0.25) * this.rate;
    const from = Math.floor(this.playhead);
    this.playhead += step;
    const to = Math.floor(this.playhead);
    const pxPerSample = (PAPER_SPEED_MM_S * PX_PER_MM) / this.rate;
    for (let index = from + 1; index <= to; index += 1) this.drawSample(index, pxPerSample);
  }

  drawSample(index, pxPerSample) {
    const ctx = this.context;
    this.x += pxPerSample;
    if (this.x >= this.width) {
      this.x -= this.width;
      this.lastPoint = null;
    }
    ctx.clearRect(this.x, 0, ERASE_AHEAD_PX, this.height);
    const microvolts = this.samples.get(index);
    if (microvolts === undefined) {
      this.lastPoint = null;
      return;
    }
    const y = this.height / 2 - (microvolts / 1000) * GAIN_MM_PER_MV * PX_PER_MM;
    if (this.lastPoint !== null) {
      ctx.strokeStyle = this.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(this.lastPoint.x, this.lastPoint.y);
      ctx.lineTo(this.x, y);
      ctx.stroke();
    }
    this.lastPoint = { x: this.x, y };
  }
}
