// The /events WebSocket: authenticate, subscribe, reconnect with backoff.
// After every (re)connection the caller's onOpen refetches current state, because
// events sent while the socket was down are not replayed by central.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class LiveConnection {
  constructor({ token, patientIds, onEvent, onState, onOpen }) {
    this.token = token;
    this.patientIds = new Set(patientIds);
    this.onEvent = onEvent;
    this.onState = onState;
    this.onOpen = onOpen;
    this.delayMs = MIN_DELAY_MS;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "logged out");
  }

  subscribe(patientId) {
    this.patientIds.add(patientId);
    this.send({ type: "subscribe", v: 1, patient_id: patientId });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.onState({ state: "connecting" });
    const socket = new WebSocket(`${scheme}://${location.host}/events`);
    this.socket = socket;
    socket.onopen = () => {
      this.delayMs = MIN_DELAY_MS;
      socket.send(JSON.stringify({ type: "auth", v: 1, token: this.token }));
      for (const id of this.patientIds) {
        socket.send(JSON.stringify({ type: "subscribe", v: 1, patient_id: id }));
      }
      this.onState({ state: "connected" });
      this.onOpen();
    };
    socket.onmessage = (frame) => {
      let event;
      try {
        event = JSON.parse(frame.data);
      } catch (error) {
        console.warn("events: ignored a frame that is not JSON", error);
        return;
      }
      this.onEvent(event);
    };
    socket.onclose = (close) => {
      if (this.socket !== socket || this.stopped) return;
      // Jitter spreads the reconnects of many screens after a central restart.
      const delay = this.delayMs * (0.75 + Math.random() * 0.5);
      this.delayMs = Math.min(this.delayMs * 2, MAX_DELAY_MS);
      this.onState({ state: "reconnecting", delayMs: delay, code: close.code });
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }
}
