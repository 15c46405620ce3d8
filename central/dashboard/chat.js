// Chat panel of the patient page: threads, members, sealed messages.

import { ChatIdentity, ChatRejected } from "./chat-crypto.js";

const $ = (id) => document.getElementById(id);

export class ChatPanel {
  constructor(api) {
    this.api = api;
    this.identity = null;
    this.patientId = null;
    this.thread = null;
    this.senderKeys = new Map();
    this.shown = new Set();
    this.lastId = 0;
    this.threadsLoaded = false;
    this.updateThreadForm();
    $("thread-form").addEventListener("submit", (e) => { e.preventDefault(); this.createThread(); });
    $("member-form").addEventListener("submit", (e) => { e.preventDefault(); this.addMember(); });
    $("message-form").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
  }

  // A thread can be started only once the patient's threads are loaded and the
  // chat keys are published, so an early click cannot post for no patient.
  updateThreadForm() {
    const ready = Boolean(this.patientId && this.identity && this.threadsLoaded);
    $("thread-form").querySelector("button[type=submit]").disabled = !ready;
  }

  reset() {
    this.identity = null;
    this.patientId = null;
    this.threadsLoaded = false;
    this.updateThreadForm();
    this.thread = null;
    this.senderKeys.clear();
    $("thread-view").hidden = true;
    $("messages").replaceChildren();
  }

  async start(userId) {
    const identity = await ChatIdentity.loadOrCreate(userId);
    await this.api.put("/chat/keys", identity.publicKeysJson());
    this.identity = identity;
    $("chat-key").textContent = `Your chat key fingerprint: ${this.identity.keyId}`;
    this.updateThreadForm();
  }

  async showPatient(patientId, alarms) {
    this.patientId = patientId;
    this.thread = null;
    this.threadsLoaded = false;
    this.updateThreadForm();
    $("thread-view").hidden = true;
    const select = $("thread-alarm");
    select.replaceChildren(new Option("no alarm", ""));
    for (const alarm of alarms) select.append(new Option(`${alarm.kind} (${alarm.priority})`, alarm.alarm_id));
    await this.loadThreads();
    this.threadsLoaded = true;
    this.updateThreadForm();
  }

  async loadThreads() {
    const { threads } = await this.api.get(`/chat/threads?patient_id=${encodeURIComponent(this.patientId)}`);
    const list = $("thread-list");
    list.replaceChildren();
    for (const thread of threads) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `${thread.title}${thread.alarm_id ? " (alarm)" : ""}${thread.member ? "" : " - join"}`;
      button.dataset.threadId = thread.id;
      button.addEventListener("click", () => this.openThread(thread.id));
      const item = document.createElement("li");
      item.append(button);
      list.append(item);
    }
  }

  async createThread() {
    const body = { patient_id: this.patientId, title: $("thread-title").value,
      alarm_id: $("thread-alarm").value || null };
    const thread = await this.report(() => this.api.post("/chat/threads", body));
    if (!thread) return;
    $("thread-title").value = "";
    await this.loadThreads();
    await this.openThread(thread.id);
  }

  async openThread(threadId) {
    let thread = await this.api.get(`/chat/threads/${threadId}`);
    if (!thread.member) {
      await this.report(() => this.api.post(`/chat/threads/${threadId}/members`, { user_id: Number(this.identity.userId) }));
      thread = await this.api.get(`/chat/threads/${threadId}`);
    }
    this.thread = thread;
    this.shown = new Set();
    this.lastId = 0;
    $("thread-view").hidden = false;
    $("thread-name").textContent = thread.title;
    this.showMembers();
    $("messages").replaceChildren();
    await this.catchUp();
  }

  // Fetch what was stored after the newest message shown, for example after the
  // events socket was down.
  async catchUp() {
    if (!this.thread) return;
    const { messages } = await this.api.get(`/chat/threads/${this.thread.id}/messages?after_id=${this.lastId}`);
    for (const item of messages) await this.receive(item.envelope, item.id);
  }

  showMembers() {
    $("thread-members").textContent = "Members: " + this.thread.members
      .map((m) => `${m.display_name} (id ${m.user_id}${m.key ? "" : ", no key"})`).join(", ");
  }

  async addMember() {
    const userId = Number($("member-id").value);
    const done = await this.report(() => this.api.post(`/chat/threads/${this.thread.id}/members`, { user_id: userId }));
    if (!done) return;
    $("member-id").value = "";
    this.thread = await this.api.get(`/chat/threads/${this.thread.id}`);
    this.showMembers();
  }

  async send() {
    const input = $("message-text");
    const text = input.value;
    const sent = await this.report(async () => {
      // Fetch the members again so the message is sealed for exactly those who may
      // read the patient now.
      this.thread = await this.api.get(`/chat/threads/${this.thread.id}`);
      this.showMembers();
      const recipients = this.thread.members.filter((m) => m.key).map((m) => m.key);
      const envelope = await this.identity.seal(this.thread.id, text, recipients);
      await this.api.post(`/chat/threads/${this.thread.id}/messages`, envelope);
      return envelope;
    });
    if (sent) input.value = "";
  }

  // A chat.message event from /events.
  async onEvent(event) {
    if (!this.thread || event.thread_id !== this.thread.id) return;
    await this.receive(event.envelope, event.id);
  }

  async receive(envelope, storedId) {
    this.lastId = Math.max(this.lastId, storedId);
    // History and the live event can both deliver a message; show it once.
    if (this.shown.has(envelope.message_id)) return;
    this.shown.add(envelope.message_id);
    const item = document.createElement("li");
    item.dataset.messageId = envelope.message_id;
    const from = document.createElement("div");
    from.className = "from";
    let sender = this.thread.members.find((m) => m.user_id === envelope.sender_id);
    if (!sender) {
      // A colleague who joined after the thread was opened.
      this.thread = await this.api.get(`/chat/threads/${this.thread.id}`);
      this.showMembers();
      sender = this.thread.members.find((m) => m.user_id === envelope.sender_id);
    }
    from.textContent = `${sender ? sender.display_name : "user " + envelope.sender_id}, ${new Date(envelope.sent_at).toLocaleTimeString()}`;
    const body = document.createElement("div");
    try {
      const text = this.identity.opened.has(envelope.message_id)
        ? this.identity.opened.get(envelope.message_id)
        : await this.identity.open(envelope, await this.senderKey(envelope.sender_key_id), this.thread.id);
      body.textContent = text;
      body.className = "text";
    } catch (error) {
      body.className = "rejected";
      body.textContent = error instanceof ChatRejected ? `Rejected: ${error.problem}` : `Could not open: ${error.message}`;
    }
    item.append(from, body);
    $("messages").append(item);
  }

  async senderKey(keyId) {
    if (!this.senderKeys.has(keyId)) this.senderKeys.set(keyId, await this.api.get(`/chat/keys/${keyId}`));
    return this.senderKeys.get(keyId);
  }

  async report(action) {
    $("chat-error").textContent = "";
    try {
      return await action();
    } catch (error) {
      $("chat-error").textContent = error.message;
      return null;
    }
  }
}
