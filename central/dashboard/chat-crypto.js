// Browser side of the encrypted chat (format: docs/chat.md, protocol/chat.py).
// Private keys are generated non-extractable and kept in IndexedDB, so page script
// can use them but never read their bytes, and they never leave this browser.

const DB_NAME = "aura-chat";
const STORE = "identities";
const SIGNED_PREFIX = "aura-chat/1";
const KEY_ID_PREFIX = "aura-chat-key/1";
const WRAP_INFO_PREFIX = "aura-chat/1 wrap";
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const ECDSA = { name: "ECDSA", namedCurve: "P-256" };
const SIGN_PARAMS = { name: "ECDSA", hash: "SHA-256" };
const encoder = new TextEncoder();

export class ChatRejected extends Error {
  constructor(messageId, problem) {
    super(`chat message ${messageId} rejected: ${problem}`);
    this.messageId = messageId;
    this.problem = problem;
  }
}

export function toBase64(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
}

export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function concat(...parts) {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function keyId(ecdhPublic, signingPublic) {
  const digest = await crypto.subtle.digest(
    "SHA-256", concat(encoder.encode(KEY_ID_PREFIX), ecdhPublic, signingPublic));
  return hex(digest).slice(0, 32);
}

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function storeRecord(key, value) {
  const db = await openDatabase();
  await new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(value, key);
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  db.close();
}

async function loadRecord(key) {
  const db = await openDatabase();
  const value = await new Promise((resolve, reject) => {
    const request = db.transaction(STORE).objectStore(STORE).get(key);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  return value;
}

export function headerBytes(env) {
  return encoder.encode([
    SIGNED_PREFIX, env.message_id, env.thread_id, env.sender_id, env.sender_key_id,
    String(env.counter), env.sent_at, env.ephemeral_key,
  ].join("\n"));
}

export function signedBytes(env) {
  const lines = [new TextDecoder().decode(headerBytes(env)), env.nonce, env.ciphertext];
  for (const r of env.recipients) {
    lines.push([r.user_id, r.key_id, r.nonce, r.wrapped_key].join(" "));
  }
  return encoder.encode(lines.join("\n"));
}

async function wrappingKey(privateKey, publicPoint, messageId, userId, recipientKeyId) {
  const publicKey = await crypto.subtle.importKey("raw", publicPoint, ECDH, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: publicKey }, privateKey, 256);
  const material = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: encoder.encode(messageId),
      info: encoder.encode(`${WRAP_INFO_PREFIX} ${userId} ${recipientKeyId}`) },
    material, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

function randomBytes(count) {
  return crypto.getRandomValues(new Uint8Array(count));
}

export class ChatIdentity {
  constructor(userId, ecdh, signing, counter) {
    this.userId = String(userId);
    this.ecdh = ecdh;
    this.signing = signing;
    this.counter = counter;
    this.opened = new Map(); // message id -> {text, signature}
    this.counters = new Map(); // "key id:counter" -> message id
  }

  // Load this user's key pairs from IndexedDB, or generate and store new ones.
  static async loadOrCreate(userId) {
    const record = await loadRecord(`user:${userId}`);
    if (record) {
      const identity = new ChatIdentity(userId, record.ecdh, record.signing, record.counter);
      await identity.exportPublic();
      return identity;
    }
    const ecdh = await crypto.subtle.generateKey(ECDH, false, ["deriveBits"]);
    const signing = await crypto.subtle.generateKey(ECDSA, false, ["sign", "verify"]);
    const identity = new ChatIdentity(userId, ecdh, signing, 0);
    await identity.save();
    await identity.exportPublic();
    return identity;
  }

  async save() {
    await storeRecord(`user:${this.userId}`, {
      ecdh: this.ecdh, signing: this.signing, counter: this.counter,
    });
  }

  async exportPublic() {
    this.ecdhPublic = new Uint8Array(await crypto.subtle.exportKey("raw", this.ecdh.publicKey));
    this.signingPublic = new Uint8Array(await crypto.subtle.exportKey("raw", this.signing.publicKey));
    this.keyId = await keyId(this.ecdhPublic, this.signingPublic);
  }

  publicKeysJson() {
    return { ecdh_public: toBase64(this.ecdhPublic), signing_public: toBase64(this.signingPublic) };
  }

  // Encrypt text for every recipient key ({user_id, key_id, ecdh_public}) and sign.
  async seal(threadId, text, recipients) {
    // The clock is a floor so that two tabs sharing this key rarely repeat a counter.
    this.counter = Math.max(this.counter + 1, Date.now());
    await this.save();
    const ephemeral = await crypto.subtle.generateKey(ECDH, true, ["deriveBits"]);
    const env = {
      v: 1,
      message_id: crypto.randomUUID(),
      thread_id: threadId,
      sender_id: this.userId,
      sender_key_id: this.keyId,
      counter: this.counter,
      sent_at: new Date().toISOString(),
      ephemeral_key: toBase64(await crypto.subtle.exportKey("raw", ephemeral.publicKey)),
    };
    const header = headerBytes(env);
    const contentKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
    const nonce = randomBytes(12);
    env.nonce = toBase64(nonce);
    env.ciphertext = toBase64(await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: header }, contentKey, encoder.encode(text)));
    const rawContentKey = await crypto.subtle.exportKey("raw", contentKey);
    const ordered = [...recipients].sort((a, b) =>
      (a.user_id + " " + a.key_id < b.user_id + " " + b.key_id ? -1 : 1));
    env.recipients = [];
    for (const recipient of ordered) {
      const wrapKey = await wrappingKey(ephemeral.privateKey, fromBase64(recipient.ecdh_public),
        env.message_id, recipient.user_id, recipient.key_id);
      const wrapNonce = randomBytes(12);
      const wrapped = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: wrapNonce, additionalData: header }, wrapKey, rawContentKey);
      env.recipients.push({ user_id: recipient.user_id, key_id: recipient.key_id,
        nonce: toBase64(wrapNonce), wrapped_key: toBase64(wrapped) });
    }
    env.signature = toBase64(await crypto.subtle.sign(
      SIGN_PARAMS, this.signing.privateKey, signedBytes(env)));
    return env;
  }

  // Verify and decrypt an envelope from sender ({user_id, key_id, signing_public}).
  async open(env, sender, threadId) {
    const id = env.message_id;
    if (env.v !== 1) throw new ChatRejected(id, `unsupported version ${env.v}`);
    if (env.thread_id !== threadId) throw new ChatRejected(id, `addressed to thread ${env.thread_id}`);
    if (sender.user_id !== env.sender_id || sender.key_id !== env.sender_key_id) {
      throw new ChatRejected(id, "sender key does not match the envelope");
    }
    const stated = await keyId(fromBase64(sender.ecdh_public), fromBase64(sender.signing_public));
    if (stated !== sender.key_id) throw new ChatRejected(id, "sender key id does not match its keys");
    const verifyKey = await crypto.subtle.importKey("raw", fromBase64(sender.signing_public), ECDSA, false, ["verify"]);
    const valid = await crypto.subtle.verify(SIGN_PARAMS, verifyKey, fromBase64(env.signature), signedBytes(env));
    if (!valid) throw new ChatRejected(id, "signature does not verify");
    if (this.opened.has(id)) throw new ChatRejected(id, "replayed: message id seen before");
    const counterKey = `${env.sender_key_id}:${env.counter}`;
    if (this.counters.has(counterKey)) {
      throw new ChatRejected(id, `replayed: counter ${env.counter} of this sender key seen before`);
    }
    const text = await this.decrypt(env);
    this.opened.set(id, text);
    this.counters.set(counterKey, id);
    return text;
  }

  async decrypt(env) {
    const mine = env.recipients.find((r) => r.user_id === this.userId && r.key_id === this.keyId);
    if (!mine) throw new ChatRejected(env.message_id, "not encrypted for this key");
    const header = headerBytes(env);
    try {
      const wrapKey = await wrappingKey(this.ecdh.privateKey, fromBase64(env.ephemeral_key),
        env.message_id, this.userId, this.keyId);
      const rawContentKey = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64(mine.nonce), additionalData: header }, wrapKey,
        fromBase64(mine.wrapped_key));
      const contentKey = await crypto.subtle.importKey("raw", rawContentKey, "AES-GCM", false, ["decrypt"]);
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64(env.nonce), additionalData: header }, contentKey,
        fromBase64(env.ciphertext));
      return new TextDecoder().decode(plain);
    } catch (error) {
      throw new ChatRejected(env.message_id, `decryption failed (${error.name})`);
    }
  }
}
