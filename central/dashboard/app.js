// The ward dashboard: login, bed tiles with live ECG and vitals, alarms, tasks,
// and the patient page with trends and chat.

import { Api } from "./api.js";
import { LiveConnection } from "./live.js";
import { EcgStrip } from "./ecg.js";
import { AlarmSignals, PRIORITY_RANK } from "./alarms.js";
import { drawTrend } from "./trends.js";
import { ChatPanel } from "./chat.js";

// Numerics arrive every second, and the agent sends no heart rate while the lead
// is flat or too noisy to count beats. A value this old no longer describes the
// patient, so it is greyed out; 5 s tolerates a few late messages.
const STALE_AFTER_S = 5;
const WARD_REFRESH_MS = 30000;
const TREND_HOURS = 4;
const SESSION_WARNING_S = 60;
const CODES = {
  hr: "MDC_ECG_HEART_RATE",
  pulse: "MDC_PULS_OXIM_PULS_RATE",
  spo2: "MDC_PULS_OXIM_SAT_O2",
  rr: "MDC_RESP_RATE",
  sys: "MDC_PRESS_BLD_NONINV_SYS",
  dia: "MDC_PRESS_BLD_NONINV_DIA",
  temp: "MDC_TEMP_BODY",
};

const $ = (id) => document.getElementById(id);
const api = new Api();
const signals = new AlarmSignals();
const chat = new ChatPanel(api);
const state = {
  me: null, patients: [], tiles: new Map(), alarms: new Map(), live: null,
  wardTimer: null, view: "ward", sessionEndsAt: null,
};

function alarmKey(patientId, alarmId) {
  return `${patientId}/${alarmId}`;
}

// ---- login and logout

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  signals.unlock(); // inside the click: the only moment audio may be enabled
  $("login-error").textContent = "";
  try {
    const session = await api.login($("username").value, $("password").value);
    // TODO: central has no token refresh yet, so the screen logs out at expiry.
    state.sessionEndsAt = Date.now() + session.expires_in * 1000;
    $("password").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});
$("logout").addEventListener("click", () => logout("logged out"));
api.onUnauthorized = () => logout("your session ended; log in again");

async function start() {
  state.me = await api.get("/auth/me");
  $("user-name").textContent = state.me.display_name;
  $("logout").hidden = false;
  $("login-view").hidden = true;
  showView("ward");
  await loadPatients();
  state.live = new LiveConnection({
    token: api.token,
    patientIds: state.patients.map((p) => p.id),
    onEvent: handleEvent,
    onState: showConnection,
    onOpen: () => catchUp().catch((error) => console.warn("catching up failed", error)),
  });
  state.live.start();
  // Assignments change (admissions, transfers, shifts), so the bed list is
  // refreshed with the tasks and new patients are subscribed.
  state.wardTimer = setInterval(() => {
    refreshPeriodically().catch((error) => console.warn("ward refresh failed", error));
  }, WARD_REFRESH_MS);
  requestAnimationFrame(drawFrame);
  chat.start(state.me.id).catch((error) => { $("chat-key").textContent = `Chat unavailable: ${error.message}`; });
}

function logout(reason) {
  if (state.live) state.live.stop();
  clearInterval(state.wardTimer);
  signals.stop();
  chat.reset();
  api.token = null;
  $("session").hidden = true;
  state.live = null;
  state.tiles.clear();
  state.alarms.clear();
  $("tiles").replaceChildren();
  $("logout").hidden = true;
  $("user-name").textContent = "";
  for (const id of ["ward-view", "patient-view"]) $(id).hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = reason === "logged out" ? "" : reason;
  showConnection({ state: "offline" });
}

function showView(view) {
  state.view = view;
  $("ward-view").hidden = view !== "ward";
  $("patient-view").hidden = view !== "patient";
  if (view === "ward") for (const tile of state.tiles.values()) tile.strip.resize();
}

// Canvases keep their pixel size, so they are sized again when the window changes.
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (state.view === "ward") for (const tile of state.tiles.values()) tile.strip.resize();
  }, 200);
});

function showConnection({ state: connection, delayMs }) {
  const badge = $("connection");
  badge.dataset.state = connection;
  badge.textContent = {
    connected: "live",
    connecting: "connecting...",
    reconnecting: `connection lost; retrying in ${Math.round((delayMs || 0) / 1000)} s`,
    offline: "not connected",
  }[connection];
}

// ---- tiles

async function loadPatients() {
  const { patients } = await api.get("/patients");
  state.patients = patients;
  $("no-patients").hidden = patients.length > 0;
  const keep = new Set(patients.map((p) => p.id));
  for (const [id, tile] of state.tiles) {
    if (!keep.has(id)) { tile.element.remove(); state.tiles.delete(id); }
  }
  const added = patients.filter((p) => !state.tiles.has(p.id)).map((p) => p.id);
  for (const patient of patients) if (!state.tiles.has(patient.id)) addTile(patient);
  if (patients[0]) $("ward-name").textContent = patients[0].ward || "";
  return added;
}

function addTile(patient) {
  const element = $("tile-template").content.firstElementChild.cloneNode(true);
  element.dataset.patientId = patient.id;
  element.querySelector(".bed").textContent = patient.bed_label || patient.bed_id || "no bed";
  element.querySelector(".patient").textContent = `${patient.display_name} (${patient.id})`;
  element.setAttribute("aria-label", `${patient.bed_label || ""} ${patient.display_name}: open patient page`);
  element.addEventListener("click", () => openPatient(patient.id));
  element.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); openPatient(patient.id); }
  });
  $("tiles").append(element);
  const tile = { patient, element, strip: new EcgStrip(element.querySelector(".ecg")), values: {}, lastEventAt: null };
  state.tiles.set(patient.id, tile);
}

function setValue(tile, name, text, receivedAt) {
  tile.values[name] = { text, at: receivedAt };
  tile.element.querySelector(`[data-vital="${name}"] dd`).textContent = text;
}

function applyMeasurements(tile, measurements, receivedAt) {
  const byCode = new Map(measurements.map((m) => [m.code, m]));
  const rate = byCode.get(CODES.hr) || byCode.get(CODES.pulse);
  if (rate) {
    setValue(tile, "hr", Math.round(rate.value), receivedAt);
    if (rate.quality !== null && rate.quality !== undefined) {
      setValue(tile, "quality", `${Math.round(rate.quality * 100)} %`, receivedAt);
    }
  }
  if (byCode.has(CODES.spo2)) setValue(tile, "spo2", Math.round(byCode.get(CODES.spo2).value), receivedAt);
  if (byCode.has(CODES.rr)) setValue(tile, "rr", Math.round(byCode.get(CODES.rr).value), receivedAt);
  if (byCode.has(CODES.sys)) {
    const dia = byCode.get(CODES.dia);
    setValue(tile, "bp", `${Math.round(byCode.get(CODES.sys).value)}/${dia ? Math.round(dia.value) : "--"}`, receivedAt);
  }
  if (byCode.has(CODES.temp)) setValue(tile, "temp", byCode.get(CODES.temp).value.toFixed(1), receivedAt);
}

// Grey out values that stopped updating and say how long the device has been quiet.
function markStale(nowMs) {
  for (const tile of state.tiles.values()) {
    for (const [name, value] of Object.entries(tile.values)) {
      if (name === "news2") continue;
      const stale = (nowMs - value.at) / 1000 > STALE_AFTER_S;
      tile.element.querySelector(`[data-vital="${name}"]`).classList.toggle("stale", stale);
    }
    const device = tile.element.querySelector(".device-state");
    if (tile.lastEventAt === null) device.textContent = "no data yet";
    else {
      const quiet = Math.round((nowMs - tile.lastEventAt) / 1000);
      device.textContent = quiet <= 3 ? "device live" : `no data for ${quiet} s`;
    }
  }
}

function drawFrame(nowMs) {
  if (api.token === null) return;
  if (state.view === "ward") for (const tile of state.tiles.values()) tile.strip.frame(nowMs);
  requestAnimationFrame(drawFrame);
}

setInterval(() => {
  if (api.token === null) return;
  const now = Date.now();
  markStale(now);
  showSession(now);
  signals.update([...state.alarms.values()], now);
  $("audio-state").textContent = signals.audioReady ? "alarm sound on" : "alarm sound off: click anywhere to enable";
}, 1000);
document.addEventListener("click", () => { if (api.token !== null && !signals.audioReady) signals.unlock(); });

function showSession(nowMs) {
  const left = Math.round((state.sessionEndsAt - nowMs) / 1000);
  const notice = $("session");
  notice.hidden = left > SESSION_WARNING_S;
  notice.textContent = `session ends in ${Math.max(0, left)} s: log out and in again`;
  if (left <= 0) logout("your session ended; log in again");
}

// ---- events

function handleEvent(event) {
  const tile = state.tiles.get(event.patient_id);
  if (event.type === "vitals.update" && tile) {
    tile.lastEventAt = Date.now();
    if (event.measurements && event.measurements.length) applyMeasurements(tile, event.measurements, Date.now());
    if (event.waveform) {
      tile.strip.add(event.waveform);
      tile.element.querySelector(".ecg-label").textContent = `${event.waveform.lead}  25 mm/s  10 mm/mV`;
    }
  } else if (event.type === "patient.emergency") {
    onEmergency(event);
  } else if (event.type === "alarm.escalated") {
    refreshWard();
  } else if (event.type === "chat.message") {
    chat.onEvent(event);
  } else if (event.type === "error") {
    console.warn("events:", event.status, event.message);
    if (event.status === 401) logout("your session ended; log in again");
    else if (event.status === 403) {
      // The assignment ended: stop asking for this patient and drop the tile.
      if (state.live && event.patient_id) state.live.patientIds.delete(event.patient_id);
      loadPatients().catch((error) => console.warn("reloading patients failed", error));
    }
  }
}

// TODO: /care/ward does not say whether an alarm was acknowledged, so an
// acknowledgement made on another screen shows here only once the device clears it.
function onEmergency(event) {
  const key = alarmKey(event.patient_id, event.alarm_id);
  if (event.state === "cleared") state.alarms.delete(key);
  else {
    const previous = state.alarms.get(key) || {};
    state.alarms.set(key, { ...event, bed: bedLabel(event.patient_id), acknowledged: previous.acknowledged || false, pausedUntil: previous.pausedUntil || 0 });
  }
  renderAlarms();
  refreshWard();
}

function bedLabel(patientId) {
  const tile = state.tiles.get(patientId);
  return tile ? tile.patient.bed_label : null;
}

// After a (re)connection: events sent meanwhile are lost, so fetch current state.
async function catchUp() {
  if (state.live === null) return;
  await loadPatients();
  for (const patient of state.patients) state.live.subscribe(patient.id);
  await Promise.all([refreshWard(), chat.catchUp(), ...state.patients.map((p) => loadLatest(p.id))]);
}

async function refreshPeriodically() {
  if (state.live === null) return;
  const added = await loadPatients();
  for (const id of added) state.live.subscribe(id);
  await Promise.all([refreshWard(), ...added.map((id) => loadLatest(id))]);
}

// Show the newest stored values at once, each aged by its own measurement time.
async function loadLatest(patientId) {
  const detail = await api.get(`/patients/${encodeURIComponent(patientId)}`);
  const tile = state.tiles.get(patientId);
  if (!tile) return;
  const now = Date.now();
  const byCode = new Map(detail.latest_vitals.map((v) => [v.code, v]));
  for (const vital of detail.latest_vitals) {
    const shownWithOther = vital.code === CODES.dia || (vital.code === CODES.pulse && byCode.has(CODES.hr));
    if (shownWithOther) continue;
    const group = vital.code === CODES.sys && byCode.has(CODES.dia) ? [vital, byCode.get(CODES.dia)] : [vital];
    applyMeasurements(tile, group, Math.min(now, Date.parse(vital.measured_at)));
  }
  const seen = detail.devices.map((d) => Date.parse(d.last_seen_at)).filter((t) => !Number.isNaN(t));
  if (seen.length && tile.lastEventAt === null) tile.lastEventAt = Math.min(now, Math.max(...seen));
}

// ---- alarms and tasks

async function refreshWard() {
  let ward;
  try {
    ward = await api.get("/care/ward");
  } catch (error) {
    console.warn("ward refresh failed", error);
    return;
  }
  const active = new Map();
  for (const item of ward.items) {
    if (item.kind === "alarm") {
      const key = alarmKey(item.patient_id, item.alarm.alarm_id);
      const previous = state.alarms.get(key) || {};
      active.set(key, { ...item.alarm, patient_id: item.patient_id, bed: item.bed_label,
        acknowledged: previous.acknowledged || false, pausedUntil: previous.pausedUntil || 0 });
    } else if (item.kind === "news2") {
      const tile = state.tiles.get(item.patient_id);
      const news2 = item.news2;
      if (tile) setValue(tile, "news2", news2Text(news2), Date.now());
    }
  }
  state.alarms = active;
  renderAlarms();
  renderTasks(ward.items);
}

// A score with parameters missing is only a lower bound, so it must not read as a
// plain "0 low" on the tile.
function news2Text(news2) {
  if (!news2.parts || Object.keys(news2.parts).length === 0) return "--";
  const missing = (news2.missing || []).length;
  if (missing === 0) return `${news2.total} ${news2.risk}`;
  return `\u2265${news2.total} (${missing} missing)`;
}

function sortedAlarms() {
  return [...state.alarms.values()].sort((a, b) =>
    PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.started_at.localeCompare(b.started_at));
}

function renderAlarms() {
  const list = $("alarm-list");
  list.replaceChildren();
  const alarms = sortedAlarms();
  $("no-alarms").hidden = alarms.length > 0;
  for (const alarm of alarms) list.append(alarmItem(alarm));
  for (const tile of state.tiles.values()) {
    const top = alarms.find((a) => a.patient_id === tile.patient.id);
    tile.element.classList.remove("alarm-high", "alarm-medium", "alarm-low", "acknowledged");
    tile.element.querySelector(".tile-alarm").textContent = top ? `${top.priority.toUpperCase()}: ${top.kind}` : "";
    if (top) tile.element.classList.add(`alarm-${top.priority}`);
    if (top && top.acknowledged) tile.element.classList.add("acknowledged");
  }
}

function alarmItem(alarm) {
  const item = document.createElement("li");
  item.className = `alarm ${alarm.priority}${alarm.acknowledged ? " acknowledged" : ""}`;
  item.dataset.alarmId = alarm.alarm_id;
  item.dataset.priority = alarm.priority;
  const title = document.createElement("div");
  title.className = "alarm-title";
  const priority = document.createElement("span");
  priority.className = "priority";
  priority.textContent = alarm.priority;
  title.append(priority, ` ${alarm.kind}, ${alarm.bed || alarm.patient_id}`);
  const detail = document.createElement("div");
  const since = new Date(alarm.started_at).toLocaleTimeString();
  detail.textContent = `since ${since}${alarm.acknowledged ? ", acknowledged" : ""}: ${alarm.evidence || ""}`;
  const actions = document.createElement("div");
  actions.className = "alarm-actions";
  const where = `/patients/${encodeURIComponent(alarm.patient_id)}/alarms/${encodeURIComponent(alarm.alarm_id)}`;
  const acknowledge = button("Acknowledge", `Acknowledge ${alarm.kind} alarm of ${alarm.bed || alarm.patient_id}`, async () => {
    await api.post(`${where}/acknowledge`);
    alarm.acknowledged = true;
    renderAlarms();
  });
  acknowledge.disabled = alarm.acknowledged;
  const pause = button("Pause audio 2 min", `Pause the sound of the ${alarm.kind} alarm for 2 minutes`, async () => {
    const result = await api.post(`${where}/audio-pause`, { seconds: 120 });
    alarm.pausedUntil = Date.parse(result.paused_until);
    renderAlarms();
  });
  if (alarm.pausedUntil > Date.now()) pause.textContent = `Audio paused until ${new Date(alarm.pausedUntil).toLocaleTimeString()}`;
  actions.append(acknowledge, pause);
  item.append(title, detail, actions);
  return item;
}

function button(text, label, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", async (event) => {
    event.stopPropagation();
    element.disabled = true;
    $("action-error").textContent = "";
    try {
      await action();
    } catch (error) {
      $("action-error").textContent = error.message;
      element.disabled = false;
    }
  });
  return element;
}

function renderTasks(items) {
  const list = $("task-list");
  list.replaceChildren();
  for (const item of items) {
    const entry = document.createElement("li");
    entry.textContent = `${item.rank}. ${item.bed_label || item.patient_id}: ${item.reason}`;
    list.append(entry);
  }
}

// ---- patient page

$("back").addEventListener("click", () => showView("ward"));

async function openPatient(patientId) {
  showView("patient");
  const patient = await api.get(`/patients/${encodeURIComponent(patientId)}`);
  $("patient-title").textContent = `${patient.bed_label || ""} ${patient.display_name} (${patient.id})`;
  $("patient-meta").textContent = `${patient.ward || ""}; admitted ${new Date(patient.admitted_at).toLocaleString()}; devices: ${patient.devices.map((d) => d.id).join(", ") || "none"}`;
  $("back").focus();
  const alarms = sortedAlarms().filter((a) => a.patient_id === patientId);
  await Promise.all([drawTrends(patientId), chat.showPatient(patientId, alarms).catch((error) => {
    $("chat-error").textContent = error.message;
  })]);
}

async function fetchVitals(patientId, code, since, until) {
  const points = [];
  let from = since;
  // Pages are oldest first; follow them so the newest values are always drawn.
  for (let page = 0; page < 5; page += 1) {
    const query = `since=${encodeURIComponent(from.toISOString())}&until=${encodeURIComponent(until.toISOString())}&code=${code}&limit=10000`;
    const body = await api.get(`/patients/${encodeURIComponent(patientId)}/vitals?${query}`);
    for (const m of body.measurements) points.push({ t: Date.parse(m.measured_at), v: m.value });
    if (!body.truncated || body.measurements.length === 0) break;
    from = new Date(points[points.length - 1].t + 1);
  }
  return points;
}

async function drawTrends(patientId) {
  const until = new Date();
  const since = new Date(until.getTime() - TREND_HOURS * 3600000);
  const window = `since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`;
  const history = await api.get(`/patients/${encodeURIComponent(patientId)}/history?${window}&minutes=${TREND_HOURS * 60}`);
  const minutes = (history.heart_rate && history.heart_rate.minutes) || [];
  const hrPoints = minutes.map((m) => ({ t: Date.parse(m.minute) + 30000, v: m.mean, min: m.min, max: m.max }));
  drawTrend($("trend-hr"), { since: since.getTime(), until: until.getTime(), yMin: 0, yMax: 200,
    series: [{ color: "#39ff7a", points: hrPoints }], band: { color: "#39ff7a", points: hrPoints } });
  const [spo2, rr] = await Promise.all([
    fetchVitals(patientId, CODES.spo2, since, until), fetchVitals(patientId, CODES.rr, since, until)]);
  drawTrend($("trend-spo2"), { since: since.getTime(), until: until.getTime(), yMin: 0, yMax: 100,
    series: [{ color: "#1fd6ff", points: spo2 }, { color: "#ffd21f", points: rr }] });
  const list = $("history-alarms");
  list.replaceChildren();
  for (const alarm of history.alarms || []) {
    const entry = document.createElement("li");
    entry.textContent = `${new Date(alarm.at).toLocaleTimeString()} ${alarm.priority} ${alarm.kind} ${alarm.state}: ${alarm.evidence}`;
    list.append(entry);
  }
  if (!list.children.length) list.append(Object.assign(document.createElement("li"), { textContent: "No alarms in this period." }));
}
