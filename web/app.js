// The demo page: its forms come from the function's GET /metadata; every failure is shown in words.

import { createClient, SkserveError } from "./skserve-client.js";
import {
  CsvError,
  csvToRows,
  expected,
  numericColumns,
  parseCell,
  parseCsv,
  toCsv,
  valueType,
} from "./csv.js";

const MAX_RETRIES = 2;
const TABLE_LIMIT = 1000; // rows drawn in the table; the download has them all

const $ = (id) => document.getElementById(id);

/** @typedef {import("./csv.js").Column} Column */
/** @typedef {import("./csv.js").Value} Value */

/**
 * One control of the "Predict one row" form.
 * @typedef {Object} Field
 * @property {Column} column
 * @property {() => ({value: Value} | {error: string, focus: HTMLElement})} read
 * @property {(value: Value) => void} fill
 */

/** @type {{client: ReturnType<typeof createClient>, meta: Object, names: string[],
 *          named: boolean, columns: Column[], fields: Field[],
 *          classification: boolean} | null} */
let session = null;
let downloadUrl = null;
// Where retry notices go, and how many there were: that of the running request.
let activeStatus = "connect-status";
let retries = 0;

function start() {
  const query = new URLSearchParams(window.location.search);
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  $("url").value = fragment.get("url") ?? query.get("url") ?? "";
  // The key comes only after the "#": browsers never send the fragment, so no
  // host or proxy logs it. One in the query string has already been sent to
  // the host that served this page: it is not used, and the page says so.
  const leaked = query.has("key");
  takeKey(fragment);
  if (leaked) {
    query.delete("key");
    cleanAddress(query, fragment);
    $("key-note").hidden = false;
  }
  window.addEventListener("hashchange", () => {
    // A #key=... pasted onto the open page does not reload it.
    const pasted = new URLSearchParams(window.location.hash.slice(1));
    if (takeKey(pasted) && $("url").value) connect();
  });
  $("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    connect();
  });
  $("predict-form").addEventListener("submit", (event) => {
    event.preventDefault();
    predictOne();
  });
  $("batch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    scoreFile();
  });
  if ($("url").value && !leaked) connect();
}

/**
 * Put the fragment's key (if any) in the form and drop it from the address,
 * so history and bookmarks never hold it; true when there was one.
 * @param {URLSearchParams} fragment
 */
function takeKey(fragment) {
  if (!fragment.has("key")) return false;
  $("key").value = fragment.get("key");
  fragment.delete("key");
  cleanAddress(new URLSearchParams(window.location.search), fragment);
  return true;
}

function cleanAddress(query, fragment) {
  const search = query.toString();
  const hash = fragment.toString();
  history.replaceState(
    null,
    "",
    window.location.pathname + (search ? `?${search}` : "") + (hash ? `#${hash}` : ""),
  );
}

async function connect() {
  clearError("connect-error");
  for (const id of ["model", "single", "batch"]) $(id).hidden = true;
  let client;
  try {
    client = createClient({
      url: $("url").value.trim(),
      apiKey: $("key").value,
      maxRetries: MAX_RETRIES,
      onRetry: reportRetry,
    });
  } catch (error) {
    showError("connect-error", error);
    return;
  }
  const done = busy("connect-form", "connect-status", "Reading the model's metadata…");
  try {
    const meta = await client.metadata();
    const count = Number(meta.n_features);
    const named = Array.isArray(meta.feature_names);
    const names = named ? meta.feature_names.map(String) : range(count).map((i) => `x${i}`);
    const columns = schemaColumns(meta, names);
    session = {
      client,
      meta,
      names,
      named,
      columns,
      fields: [],
      classification: meta.task === "classification",
    };
    showModel(meta);
    buildFeatureForm(columns, Array.isArray(meta.example) ? meta.example : null);
    done(`Connected: ${meta.name ?? "model"} version ${meta.model_version}.`);
  } catch (error) {
    session = null;
    done("");
    showError("connect-error", error);
  }
}

function showModel(meta) {
  const facts = [
    ["Name", meta.name],
    ["Version", meta.model_version],
    ["Task", meta.task],
    ["Estimator", String(meta.estimator ?? "").split(".").pop()],
    ["Features", meta.n_features],
    ["Classes", Array.isArray(meta.classes) ? meta.classes.join(", ") : "none (regression)"],
  ];
  const list = $("model-facts");
  list.replaceChildren();
  for (const [term, value] of facts) {
    if (value === undefined || value === null || value === "") continue;
    list.append(element("dt", term), element("dd", String(value)));
  }
  $("model").hidden = false;
}

/**
 * The input schema's columns when the function sends one that lists the model's
 * features in order; else (a function older than schemas) numbers, none missing.
 * @returns {Column[]}
 */
function schemaColumns(meta, names) {
  const columns = meta.input_schema?.columns;
  const usable =
    Array.isArray(columns) &&
    columns.length === names.length &&
    columns.every((column, i) => column?.name === names[i]);
  return usable ? columns : numericColumns(names);
}

function buildFeatureForm(columns, example) {
  const box = $("features");
  box.replaceChildren();
  session.fields = columns.map((column, i) => {
    const field = element("div", null, { class: "field" });
    box.append(field);
    return makeField(field, column, `feature-${i}`);
  });
  // Start from the model's typical row rather than a row of empty fields.
  if (example && example.length === columns.length) {
    session.fields.forEach((field, i) => field.fill(example[i]));
  }
  $("features-help").hidden = !columns.some((column) => column.nullable);
  $("result").hidden = true;
  clearError("predict-error");
  clearError("batch-error");
  $("batch-result").hidden = true;
  $("single").hidden = false;
  $("batch").hidden = false;
}

/**
 * Add the control for `column` to `field`: a list of choices for known
 * categories and booleans, a number box for numbers, a text box for text.
 * A column that may be missing says so, and an empty control means missing.
 * @returns {Field}
 */
function makeField(field, column, id) {
  const hintId = `${id}-hint`;
  field.append(element("label", column.name, { for: id }));
  const choices = Array.isArray(column.categories) || valueType(column) === "boolean";
  const made = choices ? choiceControl(column, id) : inputControl(column, id);
  field.append(made.control);
  if (column.nullable) {
    made.control.setAttribute("aria-describedby", hintId);
    field.append(element("span", "may be left empty", { id: hintId, class: "hint" }));
  } else {
    made.control.setAttribute("aria-required", "true");
  }
  if (made.extra) field.append(made.extra);
  return { column, read: made.read, fill: made.fill };
}

/** A number box (integers: step 1) or a text box; empty is missing. */
function inputControl(column, id) {
  const number = valueType(column) === "number";
  const integer = column.kind === "integer";
  const control = element("input", null, {
    id,
    name: column.name,
    type: number ? "number" : "text",
    autocomplete: "off",
    ...(number
      ? { step: integer ? "1" : "any", inputmode: integer ? "numeric" : "decimal" }
      : { spellcheck: "false" }),
    ...(column.nullable ? { placeholder: "missing" } : { required: "" }),
  });
  const read = () => {
    // A number box holds "" both when empty and when its text is not a
    // number; badInput tells them apart.
    if (number && control.validity.badInput) {
      return { error: `${column.name} is not a number; enter digits such as 12.5`, focus: control };
    }
    if (number && control.value !== "") {
      const value = control.valueAsNumber;
      if (!Number.isFinite(value)) {
        return { error: `${column.name} must be a finite number`, focus: control };
      }
      if (integer && !Number.isInteger(value)) {
        return { error: `${column.name} must be a whole number, got ${value}`, focus: control };
      }
      return { value };
    }
    return checked(control.value, column, control);
  };
  const fill = (value) => {
    control.value = value === null || value === undefined ? "" : String(value);
  };
  return { control, read, fill };
}

/**
 * A list of the known categories (or true and false), with "(missing)" first
 * when the column may be missing and "other…" last when the model accepts
 * values it has not seen, which shows a text box for one.
 */
function choiceControl(column, id) {
  const boolean = valueType(column) === "boolean";
  const values = Array.isArray(column.categories) ? column.categories : [true, false];
  /** @type {Array<{kind: "missing" | "value" | "other", value?: Value}>} */
  const options = [
    ...(column.nullable ? [{ kind: "missing" }] : []),
    ...values.map((value) => ({ kind: "value", value })),
    ...(!boolean && column.unknown !== false ? [{ kind: "other" }] : []),
  ];
  const control = element("select", null, { id, name: column.name });
  for (const option of options) {
    const text = { missing: "(missing)", other: "other…" }[option.kind] ?? String(option.value);
    const value = option.kind === "value" ? String(option.value) : "";
    control.append(element("option", text, { value, "data-choice": option.kind }));
  }
  const otherId = `${id}-other`;
  const other = element("input", null, {
    id: otherId,
    name: `${column.name} (other)`,
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    ...(valueType(column) === "number" ? { inputmode: "decimal" } : {}),
  });
  const otherBox = element("div", null, { class: "other" });
  otherBox.append(element("label", `other ${column.name}`, { for: otherId }), other);
  otherBox.hidden = true;
  const chosen = () => options[control.selectedIndex];
  const showOther = () => {
    otherBox.hidden = chosen()?.kind !== "other";
  };
  control.addEventListener("change", () => {
    showOther();
    if (!otherBox.hidden) other.focus();
  });
  const read = () => {
    const option = chosen();
    if (option === undefined || option.kind === "missing") {
      return checked("", column, control);
    }
    if (option.kind === "value") return { value: option.value };
    // Typed text is sent as written: "s " is another category than "s".
    return checked(other.value, column, other);
  };
  const fill = (value) => {
    const missing = value === null || value === undefined;
    let index = options.findIndex((option) =>
      missing ? option.kind === "missing" : option.kind === "value" && option.value === value,
    );
    other.value = "";
    if (index < 0 && !missing) {
      index = options.findIndex((option) => option.kind === "other");
      if (index >= 0) other.value = String(value);
    }
    control.selectedIndex = Math.max(index, 0);
    showOther();
  };
  fill(null); // the missing choice when there is one, else the first category
  const extra = options.at(-1)?.kind === "other" ? otherBox : null;
  return { control, read, fill, extra };
}

/** Text read as the column's value (by the CSV's rules), or a refusal in words. */
function checked(text, column, focus) {
  const cell = parseCell(text, column);
  if (!("error" in cell)) return { value: cell.value };
  const error = cell.missing
    ? `${column.name} may not be left empty: this model needs ${expected(column)} there`
    : `${column.name}: ${cell.error}`;
  return { error, focus };
}

async function predictOne() {
  if (!session) return;
  clearError("predict-error");
  const row = [];
  for (const field of session.fields) {
    const read = field.read();
    if ("error" in read) {
      // Refused here, in words, before any request.
      showError("predict-error", new FormError(read.error));
      read.focus.focus();
      return;
    }
    row.push(read.value);
  }
  const done = busy("predict-form", "predict-status", "Predicting…");
  try {
    // A batch of one is the API shape that carries probabilities and classes.
    const answer = await session.client.predictBatch([row], {
      probabilities: session.classification,
    });
    showPrediction(answer);
    done("");
  } catch (error) {
    done("");
    showError("predict-error", error);
  }
}

function showPrediction(answer) {
  const prediction = answer.predictions[0];
  $("prediction").textContent = String(prediction);
  $("version").textContent = answer.model_version;
  const bars = $("bars");
  bars.replaceChildren();
  const probabilities = answer.probabilities?.[0];
  if (probabilities && Array.isArray(answer.classes)) {
    answer.classes.forEach((label, i) => {
      const p = probabilities[i];
      const percent = `${(p * 100).toFixed(1)}%`;
      const item = element("li", null, {
        class: label === prediction ? "bar predicted" : "bar",
        "data-class": String(label),
        "data-probability": String(p),
      });
      const name = element("span", String(label), { class: "bar-label" });
      const track = element("span", null, { class: "bar-track", "aria-hidden": "true" });
      const fill = element("span", null, { class: "bar-fill" });
      fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      track.append(fill);
      const value = element("span", percent, { class: "bar-value" });
      item.append(name, track, value);
      bars.append(item);
    });
  }
  $("probabilities").hidden = bars.children.length === 0;
  $("result").hidden = false;
}

async function scoreFile() {
  if (!session) return;
  clearError("batch-error");
  $("batch-result").hidden = true;
  const file = $("csv").files[0];
  const size = Number($("batch-size").value);
  if (!file) {
    showError("batch-error", new Error("choose a CSV file first"));
    return;
  }
  if (!Number.isInteger(size) || size < 1) {
    showError("batch-error", new Error("rows per request must be a whole number of at least 1"));
    $("batch-size").focus();
    return;
  }
  const done = busy("batch-form", "batch-status", `Reading ${file.name}…`);
  try {
    const { rows, ignored } = csvToRows(
      parseCsv(await file.text()),
      session.names,
      session.named,
      session.columns,
    );
    const scored = await scoreRows(rows, size, (count) => {
      $("batch-status").textContent = `Scored ${count} of ${rows.length} rows…`;
    });
    showBatch(rows, scored, ignored);
    const plural = scored.requests > 1 ? "s" : "";
    done(
      `Scored ${rows.length} rows in ${scored.requests} request${plural} ` +
        `of at most ${scored.batch} rows.`,
    );
  } catch (error) {
    done("");
    showError("batch-error", error);
  }
}

/** Score rows in requests of at most `size` rows, halving it when the function refuses (413). */
async function scoreRows(rows, size, progress) {
  const predictions = [];
  const probabilities = [];
  const versions = [];
  let classes = null;
  let requests = 0;
  let batch = size;
  while (predictions.length < rows.length) {
    const chunk = rows.slice(predictions.length, predictions.length + batch);
    let answer;
    try {
      answer = await session.client.predictBatch(chunk, {
        probabilities: session.classification,
      });
    } catch (error) {
      const tooLarge = error instanceof SkserveError && error.status === 413;
      if (tooLarge && chunk.length > 1) {
        batch = Math.ceil(chunk.length / 2);
        continue;
      }
      throw error;
    }
    requests += 1;
    predictions.push(...answer.predictions);
    if (answer.probabilities) probabilities.push(...answer.probabilities);
    classes = answer.classes ?? classes;
    // A refresh on the function may swap the model between requests: every
    // row keeps the version that scored it.
    versions.push(...chunk.map(() => answer.model_version));
    progress(predictions.length);
  }
  return { predictions, probabilities, classes, versions, requests, batch };
}

function showBatch(rows, scored, ignored) {
  const classes = scored.classes ?? [];
  const header = [
    ...session.names,
    "prediction",
    ...classes.map((label) => `probability_${label}`),
    "model_version",
  ];
  const lines = rows.map((row, i) => [
    ...row,
    scored.predictions[i],
    ...(scored.probabilities[i] ?? []),
    scored.versions[i],
  ]);
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([toCsv(header, lines)], { type: "text/csv" }));
  $("download").href = downloadUrl;

  const head = element("tr");
  for (const name of ["#", ...header.slice(0, -1)]) {
    head.append(element("th", name, { scope: "col" }));
  }
  $("results").tHead.replaceChildren(head);
  const body = document.createDocumentFragment();
  lines.slice(0, TABLE_LIMIT).forEach((line, i) => {
    const tr = element("tr");
    tr.append(element("th", String(i + 1), { scope: "row" }));
    line.slice(0, -1).forEach((value, j) => {
      const isProbability = j > session.names.length;
      // A missing value shows as an empty cell, as in the download.
      const text = value === null ? "" : String(value);
      tr.append(element("td", isProbability ? Number(value).toFixed(3) : text));
    });
    body.append(tr);
  });
  $("results").tBodies[0].replaceChildren(body);
  const notes = [];
  if (rows.length > TABLE_LIMIT) {
    notes.push(
      `The table shows the first ${TABLE_LIMIT} of ${rows.length} rows; ` +
        "the download has all of them.",
    );
  }
  if (ignored.length) notes.push(`Ignored columns: ${ignored.join(", ")}.`);
  const versions = [...new Set(scored.versions)];
  notes.push(`Model version${versions.length > 1 ? "s" : ""}: ${versions.join(", ")}.`);
  $("table-note").textContent = notes.join(" ");
  $("batch-result").hidden = false;
}

/** Show an error in words with its code; never a stack trace. */
function showError(id, error) {
  const box = $(id);
  box.replaceChildren();
  let title;
  let detail = error?.message ?? String(error);
  if (error instanceof SkserveError) {
    title = {
      api: `Error ${error.status} (${error.code})`,
      cors: `Blocked request (${error.code})`,
      network: `Network error (${error.code})`,
      timeout: `Timed out (${error.code})`,
    }[error.kind];
    if (error.status === 503 && retries > 0) {
      detail +=
        `. Tried ${retries + 1} times, waiting as the function's Retry-After asked;` +
        " try again later.";
    }
  } else if (error instanceof CsvError) {
    title = "Cannot read the CSV file";
  } else if (error instanceof FormError) {
    title = "Check the form";
  } else {
    title = "Cannot do that";
  }
  box.append(element("strong", title), document.createTextNode(`: ${detail}`));
  if (error instanceof SkserveError && error.requestId) {
    box.append(element("span", ` Request id: ${error.requestId}`, { class: "request-id" }));
  }
  box.hidden = false;
}

function clearError(id) {
  $(id).hidden = true;
  $(id).replaceChildren();
}

function reportRetry({ attempt, delayMs, error }) {
  retries = attempt;
  $(activeStatus).textContent =
    `The function answered ${error.status} (${error.code}); retrying in ` +
    `${Math.round(delayMs / 1000)} s (retry ${attempt} of ${MAX_RETRIES})…`;
}

/** Disable a form while its request runs; returns a function that ends it with a status. */
function busy(formId, statusId, message) {
  const form = $(formId);
  form.setAttribute("aria-busy", "true");
  for (const control of form.elements) control.disabled = true;
  $(statusId).textContent = message;
  activeStatus = statusId;
  retries = 0;
  return (finalMessage) => {
    form.removeAttribute("aria-busy");
    for (const control of form.elements) control.disabled = false;
    $(statusId).textContent = finalMessage;
  };
}

/** A form value this model cannot take; the message names the field. */
class FormError extends Error {
  constructor(message) {
    super(message);
    this.name = "FormError";
  }
}

function range(n) {
  return Array.from({ length: Number.isInteger(n) && n > 0 ? n : 0 }, (_, i) => i);
}

function element(tag, text = null, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

start();
