// Alarm signals that reach a nurse whose tab is in the background: a WebAudio
// tone pattern per priority, a flashing document title and, when permitted, a
// system notification. Browsers start audio only after a user gesture on the page,
// so unlock() must run inside one (the login click).

export const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
// Pulses per burst and seconds between bursts, after the IEC 60601-1-8 patterns:
// high priority repeats a 10-pulse burst, medium a 3-pulse burst, low 1 or 2 pulses.
// NOTE: pulse spacing, pitch and repeat times are approximations and have not been
// measured against the standard's tolerances.
const PATTERNS = {
  high: { pulses: [0, 0.2, 0.4, 1.0, 1.2, 2.2, 2.4, 2.6, 3.2, 3.4], hz: 880, every: 8 },
  medium: { pulses: [0, 0.3, 0.6], hz: 660, every: 12 },
  low: { pulses: [0, 0.3], hz: 523, every: 20 },
};
const PULSE_S = 0.15;
const TITLE_FLASH_MS = 700;

export class AlarmSignals {
  constructor() {
    this.audio = null;
    this.nextBurstAt = 0;
    this.baseTitle = document.title;
    this.titleTimer = null;
    this.notified = new Set();
  }

  get audioReady() {
    return this.audio !== null && this.audio.state === "running";
  }

  // Call from a click or key handler: creates the audio context and asks for
  // notification permission while the gesture is active.
  unlock() {
    try {
      if (this.audio === null) this.audio = new AudioContext();
      this.audio.resume();
    } catch (error) {
      console.warn("alarm audio unavailable", error);
    }
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  // Bring signals in line with the active alarms; call about once a second.
  update(alarms, nowMs) {
    const byPriority = (a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority];
    const unacknowledged = alarms.filter((a) => !a.acknowledged).sort(byPriority);
    this.updateTitle(unacknowledged[0] || null);
    const sounding = unacknowledged.filter((a) => !(a.pausedUntil > nowMs));
    if (sounding.length > 0) this.sound(sounding[0].priority);
    for (const alarm of alarms) this.notify(alarm);
  }

  sound(priority) {
    if (!this.audioReady) return;
    const now = this.audio.currentTime;
    if (now < this.nextBurstAt) return;
    const pattern = PATTERNS[priority];
    // Scheduled on the audio clock, so the burst plays whole even if timers of a
    // background tab are throttled.
    for (const offset of pattern.pulses) this.beep(now + 0.05 + offset, pattern.hz);
    this.nextBurstAt = now + pattern.every;
  }

  beep(at, hz) {
    const oscillator = this.audio.createOscillator();
    const gain = this.audio.createGain();
    oscillator.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.3, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + PULSE_S);
    oscillator.connect(gain).connect(this.audio.destination);
    oscillator.start(at);
    oscillator.stop(at + PULSE_S + 0.02);
  }

  updateTitle(top) {
    if (!top) {
      clearInterval(this.titleTimer);
      this.titleTimer = null;
      document.title = this.baseTitle;
      return;
    }
    this.alertTitle = `${top.priority.toUpperCase()} ALARM: ${top.kind} ${top.bed || top.patient_id}`;
    if (this.titleTimer !== null) return;
    let on = false;
    this.titleTimer = setInterval(() => {
      on = !on;
      document.title = on ? `\u26a0 ${this.alertTitle}` : this.baseTitle;
    }, TITLE_FLASH_MS);
  }

  notify(alarm) {
    const key = `${alarm.patient_id}/${alarm.alarm_id}`;
    if (this.notified.has(key) || alarm.priority === "low") return;
    this.notified.add(key);
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      new Notification(`${alarm.priority} priority alarm: ${alarm.kind}`, {
        body: `${alarm.bed || alarm.patient_id}: ${alarm.evidence || ""}`,
        tag: key,
        requireInteraction: alarm.priority === "high",
      });
    } catch (error) {
      console.warn("notification failed", error);
    }
  }

  stop() {
    this.updateTitle(null);
  }
}
