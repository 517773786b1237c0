// Browser client for an skserve function: every failure is one SkserveError, API errors told apart.

/**
 * @typedef {"api" | "network" | "cors" | "timeout"} ErrorKind
 * "api": the function answered with an error; "network": it could not be
 * reached; "cors": it is reachable but the browser blocked its answer (this
 * page's origin is not in CORS_ALLOW_ORIGINS); "timeout": no answer in time.
 */

/**
 * @typedef {Object} ClientOptions
 * @property {string} url The function's URL (an absolute http(s) URL; any path prefix is kept).
 * @property {string} [apiKey] Sent as `Authorization: Bearer <key>` when set.
 * @property {number} [timeoutMs=30000] Limit for each HTTP attempt, body included.
 * @property {number} [maxRetries=2] How many times a 503 with Retry-After is retried.
 * @property {number} [maxRetryDelayMs=30000] A 503 asking to wait longer than this is not retried.
 * @property {(retry: RetryInfo) => void} [onRetry] Called before each wait, e.g. to tell the user.
 */

/**
 * @typedef {Object} RetryInfo
 * @property {number} attempt The retry about to be made (1 for the first retry).
 * @property {number} delayMs How long the client waits first, from Retry-After.
 * @property {SkserveError} error The 503 being retried.
 */

/**
 * @typedef {number | string | boolean | null} Value
 * One feature's value as the model's input schema (GET /metadata's
 * `input_schema`) says: a finite number, a string for a text or category
 * column, true or false, or null where the value may be missing. JSON has no
 * NaN: send null for a missing value.
 */

/**
 * @typedef {Array<Value> | Object<string, Value>} Row
 * Values in the model's feature order, or keyed by feature name.
 */

/** The error every client method throws. */
export class SkserveError extends Error {
  /**
   * @param {string} message What went wrong and, where known, how to fix it.
   * @param {{kind: ErrorKind, status?: number, code?: string, requestId?: string | null,
   *          retryAfterMs?: number | null, cause?: unknown}} details
   */
  constructor(message, details) {
    super(message, { cause: details.cause });
    this.name = "SkserveError";
    /** @type {ErrorKind} */
    this.kind = details.kind;
    /** HTTP status; 0 when no response could be read. @type {number} */
    this.status = details.status ?? 0;
    /** The API's error code, or network_error / cors_blocked / timeout. @type {string} */
    this.code = details.code ?? KIND_CODES[details.kind];
    /** The request id the function logged (or that the client sent). @type {string | null} */
    this.requestId = details.requestId ?? null;
    /** Retry-After of a 503, in milliseconds. @type {number | null} */
    this.retryAfterMs = details.retryAfterMs ?? null;
  }
}

const KIND_CODES = {
  api: "http_error",
  network: "network_error",
  cors: "cors_blocked",
  timeout: "timeout",
};

/**
 * Make a client bound to one function URL.
 * @param {ClientOptions} options
 * @returns {{
 *   predict: (row: Row) => Promise<{prediction: unknown, model_version: string}>,
 *   predictBatch: (rows: Row[], options?: {probabilities?: boolean}) => Promise<{
 *     predictions: unknown[], probabilities?: number[][], classes?: unknown[],
 *     model_version: string}>,
 *   metadata: () => Promise<Object<string, unknown>>,
 *   health: () => Promise<{status: string}>,
 * }}
 */
export function createClient(options) {
  const config = clientConfig(options);
  return {
    predict(row) {
      checkRow(row, "row");
      return send(config, "POST", "/predict", { features: row });
    },
    predictBatch(rows, { probabilities = false } = {}) {
      if (!Array.isArray(rows)) {
        throw new TypeError("predictBatch(rows): rows must be an array of rows");
      }
      rows.forEach((row, i) => checkRow(row, `rows[${i}]`));
      return send(config, "POST", "/predict", {
        instances: rows,
        probabilities: Boolean(probabilities),
      });
    },
    metadata() {
      return send(config, "GET", "/metadata");
    },
    health() {
      return send(config, "GET", "/health");
    },
  };
}

/** @param {ClientOptions} options */
function clientConfig(options) {
  const { url, apiKey = "", timeoutMs = 30000, maxRetries = 2 } = options ?? {};
  const { maxRetryDelayMs = 30000, onRetry = null } = options ?? {};
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`url must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(`url must use http or https, got ${parsed.protocol}`);
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError(`timeoutMs must be a number > 0, got ${timeoutMs}`);
  }
  for (const [name, value] of Object.entries({ maxRetries, maxRetryDelayMs })) {
    if (!Number.isFinite(value) || value < 0) {
      throw new TypeError(`${name} must be a number >= 0, got ${value}`);
    }
  }
  // A function URL may carry a path (Cloud Functions gen1: /<name>); keep it.
  const base = parsed.origin + parsed.pathname.replace(/\/+$/, "");
  return { base, apiKey: String(apiKey).trim(), timeoutMs, maxRetries, maxRetryDelayMs, onRetry };
}

/**
 * Refuse, before sending, a row JSON cannot carry as given: JSON.stringify would
 * turn NaN and Infinity into null (a missing value the caller did not mean) and
 * drop undefined. Whether a value suits its column is the function's to judge.
 */
function checkRow(row, name) {
  const isObject = row !== null && typeof row === "object";
  if (!isObject) {
    throw new TypeError(`${name} must be an array of values or an object of named values`);
  }
  const list = Array.isArray(row);
  const entries = list ? Array.from(row, (value, i) => [i, value]) : Object.entries(row);
  for (const [key, value] of entries) {
    const where = list ? `${name}[${key}]` : `${name}[${JSON.stringify(key)}]`;
    const type = typeof value;
    if (value === null || type === "string" || type === "boolean") continue;
    if (type === "number") {
      if (Number.isFinite(value)) continue;
      throw new TypeError(
        `${where} is ${value}, which JSON cannot carry; send null for a missing value`,
      );
    }
    throw new TypeError(
      `${where} must be a number, string, boolean or null, got ${
        Array.isArray(value) ? "an array" : type
      }`,
    );
  }
}

async function send(config, method, path, body) {
  // One id for every attempt of this call, so the function's log lines of a
  // retried request can be found together.
  const requestId = newRequestId();
  const headers = { Accept: "application/json", "X-Request-Id": requestId };
  if (config.apiKey) headers.Authorization = `Bearer ${config.apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await attemptOnce(config, path, init, requestId);
    } catch (error) {
      const retryable =
        error instanceof SkserveError &&
        error.status === 503 &&
        error.retryAfterMs !== null &&
        error.retryAfterMs <= config.maxRetryDelayMs &&
        attempt < config.maxRetries;
      if (!retryable) throw error;
      config.onRetry?.({ attempt: attempt + 1, delayMs: error.retryAfterMs, error });
      await new Promise((resolve) => setTimeout(resolve, error.retryAfterMs));
    }
  }
}

async function attemptOnce(config, path, init, requestId) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), config.timeoutMs);
  try {
    let response;
    try {
      response = await fetch(config.base + path, { ...init, signal: controller.signal });
    } catch (cause) {
      if (controller.signal.aborted) throw timeoutError(config, requestId, cause);
      throw await unreachableError(config, requestId, cause);
    }
    let text;
    try {
      text = await response.text();
    } catch (cause) {
      if (controller.signal.aborted) throw timeoutError(config, requestId, cause);
      throw new SkserveError(`the answer from ${config.base} was cut off`, {
        kind: "network",
        requestId,
        cause,
      });
    }
    return decode(response, text, requestId);
  } finally {
    clearTimeout(timer);
  }
}

function timeoutError(config, requestId, cause) {
  return new SkserveError(
    `no answer from ${config.base} within ${config.timeoutMs} ms; the request was aborted`,
    { kind: "timeout", requestId, cause },
  );
}

async function unreachableError(config, requestId, cause) {
  // fetch rejects alike for a refused connection and for an answer CORS hides.
  // An opaque no-cors request to the public /health tells them apart: it only
  // succeeds if the function is reachable, so the first failure was CORS.
  let reachable = false;
  try {
    await fetch(config.base + "/health", {
      mode: "no-cors",
      cache: "no-store",
      signal: AbortSignal.timeout(Math.min(config.timeoutMs, 5000)),
    });
    reachable = true;
  } catch {
    reachable = false;
  }
  if (reachable) {
    return new SkserveError(
      `the browser blocked the answer from ${config.base}: this page's origin ` +
        `(${globalThis.location?.origin ?? "unknown"}) is not in the function's ` +
        "CORS_ALLOW_ORIGINS",
      { kind: "cors", requestId, cause },
    );
  }
  return new SkserveError(
    `cannot reach ${config.base}: check the URL and that the function is running`,
    { kind: "network", requestId, cause },
  );
}

function decode(response, text, sentId) {
  const requestId = response.headers.get("X-Request-Id") || sentId;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) {
    if (data === null || typeof data !== "object") {
      throw new SkserveError(`HTTP ${response.status} answer is not a JSON object`, {
        kind: "api",
        status: response.status,
        code: "invalid_response",
        requestId,
      });
    }
    return data;
  }
  const error = data?.error;
  const apiError = error !== null && typeof error === "object" ? error : {};
  throw new SkserveError(
    typeof apiError.message === "string"
      ? apiError.message
      : `HTTP ${response.status} ${response.statusText}`.trim(),
    {
      kind: "api",
      status: response.status,
      code: typeof apiError.code === "string" ? apiError.code : `http_${response.status}`,
      requestId,
      retryAfterMs: retryAfterMs(response.headers.get("Retry-After")),
    },
  );
}

/**
 * Retry-After in milliseconds: delta-seconds or an HTTP date (RFC 9110 10.2.3).
 * @param {string | null} value
 * @returns {number | null}
 */
export function retryAfterMs(value) {
  if (value === null || value.trim() === "") return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

function newRequestId() {
  // getRandomValues works outside secure contexts too (randomUUID does not).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
