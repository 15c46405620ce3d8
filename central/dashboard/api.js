// REST calls to central with the bearer token; errors carry central's message.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor() {
    this.token = null;
    this.onUnauthorized = () => {};
  }

  async login(username, password) {
    const body = await this.request("POST", "/auth/login", { username, password }, false);
    this.token = body.access_token;
    return body;
  }

  async request(method, path, body = undefined, authorized = true) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (authorized) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401 && authorized) this.onUnauthorized();
      throw new ApiError(response.status, data.error || `${method} ${path} failed (${response.status})`);
    }
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body = {}) { return this.request("POST", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
}
