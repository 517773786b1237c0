// The demo page: its forms come from the function's GET /metadata; every failure is shown in words.

import { createClient, SkserveError } from "./skserve-client.js";
import { CsvError, csvToRows, parseCsv, toCsv } from "./csv.js";

const MAX_RETRIES = 2;
const TABLE_LIMIT = 1000; // rows drawn in the table; the download has them all

const $ = (id) => document.getElementById(id);

/** @type {{client: ReturnType<typeof createClient>, meta: Object, names: string[],
 *          named: boolean, classification: boolean} | null} */
let session = null;
let downloadUrl = null;
// Where retry notices go, and how many there were: that of the running request.
let activeStatus = "connect-status";
let retries = 0;

function start() {
  const params = new URLSearchParams(window.location.search);
  $("url").value = params.get("url") ?? "";
  $("key").value = params.get("key") ?? "";
  if (params.has("key")) {
    // A key in the address bar ends up in history and bookmarks; keep it
    // only in the form from here on.
    params.delete("key");
    const query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? `?${query}` : ""));
  }
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
  if ($("url").value) connect();
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
    session = { client, meta, names, named, classification: meta.task === "classification" };
    showModel(meta);
    buildFeatureForm(names);
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

function buildFeatureForm(names) {
  const box = $("features");
  box.replaceChildren();
  names.forEach((name, i) => {
    const id = `feature-${i}`;
    const field = element("div", null, { class: "field" });
    const label = element("label", name, { for: id });
    const input = element("input", null, {
      id,
      name,
      type: "number",
      step: "any",
      required: "",
      inputmode: "decimal",
      autocomplete: "off",
    });
    field.append(label, input);
    box.append(field);
  });
  $("result").hidden = true;
  clearError("predict-error");
  clearError("batch-error");
  $("batch-result").hidden = true;
  $("single").hidden = false;
  $("batch").hidden = false;
}

async function predictOne() {
  if (!session) return;
  clearError("predict-error");
  const inputs = [...$("features").querySelectorAll("input")];
  const row = inputs.map((input) => input.valueAsNumber);
  const blank = inputs.find((input) => Number.isNaN(input.valueAsNumber));
  if (blank) {
    showError("predict-error", new Error(`enter a number for ${blank.name}`));
    blank.focus();
    return;
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
    const { rows, ignored } = csvToRows(parseCsv(await file.text()), session.names, session.named);
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
      tr.append(element("td", isProbability ? Number(value).toFixed(3) : String(value)));
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
