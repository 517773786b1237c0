// Text -> the values a model takes, by its input schema (CSV cells and form fields alike);
// a bad value is named, never sent.

/**
 * One column of `GET /metadata`'s `input_schema` (fields left out take the defaults).
 * @typedef {Object} Column
 * @property {string} name
 * @property {"number" | "integer" | "boolean" | "string" | "category"} [kind="number"]
 * @property {boolean} [nullable=false] Whether the value may be missing (sent as null).
 * @property {Array<string | number | boolean>} [categories] The values the model knows.
 * @property {boolean} [unknown=true] Whether values outside `categories` are accepted.
 */

/** @typedef {number | string | boolean | null} Value */

const SHOWN_CATEGORIES = 10;

/**
 * The schema of a model published before schemas: finite numbers, none missing.
 * @param {string[]} names
 * @returns {Column[]}
 */
export function numericColumns(names) {
  return names.map((name) => ({ name, kind: "number", nullable: false }));
}

/**
 * The JSON type a column's values have: "number", "boolean" or "string".
 * A category column whose categories are numbers takes numbers.
 * @param {Column} column
 * @returns {"number" | "boolean" | "string"}
 */
export function valueType(column) {
  const kind = column.kind ?? "number";
  if (kind === "boolean") return "boolean";
  if (kind === "number" || kind === "integer") return "number";
  const first = column.categories?.[0];
  return kind === "category" && first !== undefined && typeof first !== "string"
    ? "number"
    : "string";
}

/**
 * What a column needs, in words ("a number", "a whole number", ...).
 * @param {Column} column
 */
export function expected(column) {
  if (column.kind === "integer") return "a whole number";
  return {
    number: "a number",
    boolean: "true or false",
    string: "a string",
  }[valueType(column)];
}

/**
 * Read one cell's text as the column's value. Only an empty text is missing
 * (null), and only where the column may be missing; text for a string column
 * is kept exactly as written (no trimming), since " s" and "s" are different
 * categories to the model.
 * @param {string} text
 * @param {Column} column
 * @returns {{value: Value} | {error: string, missing?: boolean}}
 */
export function parseCell(text, column) {
  if (text === "") {
    if (column.nullable) return { value: null };
    return {
      error: `empty, but this model needs ${expected(column)} there (it may not be missing)`,
      missing: true,
    };
  }
  let value;
  const type = valueType(column);
  if (type === "number") {
    if (!isNumber(text)) return { error: `${JSON.stringify(text)} is not a number` };
    value = Number(text);
    if (column.kind === "integer" && !Number.isInteger(value)) {
      return { error: `${JSON.stringify(text)} is not a whole number` };
    }
  } else if (type === "boolean") {
    const word = text.trim().toLowerCase();
    if (word !== "true" && word !== "false") {
      return { error: `${JSON.stringify(text)} is not true or false` };
    }
    value = word === "true";
  } else {
    value = text;
  }
  return known(value, column) ? { value } : { error: notKnown(text, column) };
}

/**
 * Whether the model takes `value` in `column`: one of its categories, or any
 * value where unknown ones are accepted.
 * @param {Value} value
 * @param {Column} column
 */
export function known(value, column) {
  const categories = column.categories;
  if (!Array.isArray(categories) || column.unknown !== false) return true;
  return categories.includes(value);
}

function notKnown(text, column) {
  const categories = column.categories ?? [];
  let shown = categories
    .slice(0, SHOWN_CATEGORIES)
    .map((c) => JSON.stringify(c))
    .join(", ");
  if (categories.length > SHOWN_CATEGORIES) {
    shown += ` and ${categories.length - SHOWN_CATEGORIES} more`;
  }
  return `${JSON.stringify(text)} is not one of ${shown} (this model refuses other values)`;
}

/**
 * Parse CSV text (RFC 4180: quoted fields, "" escapes, CRLF or LF) into rows of strings.
 * @param {string} text
 * @returns {string[][]}
 */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // a BOM from spreadsheet exports
  for (; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else {
      field += c;
    }
  }
  if (quoted) throw new CsvError("the file ends inside a quoted field (a \" is not closed)");
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** A CSV that cannot be scored as it is; the message names the line and column. */
export class CsvError extends Error {
  constructor(message) {
    super(message);
    this.name = "CsvError";
  }
}

/**
 * Turn parsed CSV rows into rows of typed values in the model's feature order.
 * A first row that names one of the model's features, or that is all text where
 * the model wants numbers, is a header naming the features (any order; other
 * columns are ignored); otherwise the file has no header and its columns are in
 * the model's order. Each cell is read by `parseCell`: an empty one is missing
 * (null) where the column may be missing and refused otherwise.
 * @param {string[][]} table from parseCsv
 * @param {string[]} names the model's feature names (or x0..xN when it has none)
 * @param {boolean} named whether the model was trained with feature names
 * @param {Column[] | null} [columns] the input schema's columns, in the model's
 *   order (default: numbers that may not be missing, as before schemas)
 * @returns {{rows: Value[][], ignored: string[]}}
 */
export function csvToRows(table, names, named, columns = null) {
  const schema = columns ?? numericColumns(names);
  if (schema.length !== names.length) {
    throw new CsvError(`the model lists ${schema.length} columns for ${names.length} features`);
  }
  // Lines of empty cells (a trailing newline, a spreadsheet's blank rows) carry no row.
  const lines = table
    .map((cells, index) => ({ cells, line: index + 1 }))
    .filter(({ cells }) => cells.some((cell) => cell.trim() !== ""));
  if (lines.length === 0) throw new CsvError("the file has no rows");
  const first = lines[0].cells;
  const hasHeader = isHeader(first, names, named, schema);
  let positions = names.map((_, i) => i);
  let ignored = [];
  if (hasHeader) {
    const header = first.map((cell) => cell.trim());
    const duplicate = header.find((name, i) => header.indexOf(name) !== i);
    if (duplicate !== undefined) {
      throw new CsvError(`the header names the column "${duplicate}" twice`);
    }
    const missing = names.filter((name) => !header.includes(name));
    if (missing.length === 0) {
      positions = names.map((name) => header.indexOf(name));
      ignored = header.filter((name) => !names.includes(name));
    } else if (named || header.length !== names.length) {
      throw new CsvError(
        `the header lacks the model's feature${missing.length > 1 ? "s" : ""} ` +
          `${missing.map((name) => `"${name}"`).join(", ")} ` +
          `(it expects ${names.join(", ")})`,
      );
    } // else a model without names: any header, columns in the model's order
  }
  const data = hasHeader ? lines.slice(1) : lines;
  if (data.length === 0) throw new CsvError("the file has a header but no rows");
  const width = hasHeader ? first.length : names.length;
  const label = (i) =>
    hasHeader ? `column "${first[i].trim()}"` : `column ${i + 1} ("${names[i]}")`;
  const rows = data.map(({ cells, line }) => {
    if (cells.length !== width) {
      throw new CsvError(`line ${line} has ${cells.length} values; expected ${width}`);
    }
    return positions.map((position, j) => {
      const cell = parseCell(cells[position], schema[j]);
      if ("error" in cell) throw new CsvError(`line ${line}, ${label(position)}: ${cell.error}`);
      return cell.value;
    });
  });
  return { rows, ignored };
}

/** Whether the first non-blank line of a CSV is a header rather than a row. */
function isHeader(cells, names, named, schema) {
  const trimmed = cells.map((cell) => cell.trim());
  if (named && trimmed.some((cell) => names.includes(cell))) return true;
  const fits =
    cells.length === schema.length &&
    cells.every((cell, j) => !("error" in parseCell(cell, schema[j])));
  if (fits) return false;
  // Column titles are text, none empty; a row with a number or a gap in it is
  // data with a bad cell, to be named as such rather than skipped.
  return trimmed.every((cell) => cell !== "" && !isNumber(cell));
}

function isNumber(cell) {
  // Number("") is 0 and Number("0x1f") is 31: accept only decimal notation.
  const decimal = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
  return decimal.test(cell) && Number.isFinite(Number(cell));
}

// OWASP's CSV injection guidance (and ASVS 1.2.10, which adds NUL): a
// spreadsheet runs a cell that starts with one of these characters.
const FORMULA_START = /^[=+\-@\t\r\0]/;
// A number in decimal notation: a spreadsheet reads it as that number.
const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * A text cell as a spreadsheet may open it: with a leading apostrophe when
 * it starts with a character that makes the spreadsheet run it as a formula
 * ("=cmd|' /C calc'!A0", "@SUM(1)", "+HYPERLINK(...)", "-2+3"), unless it is
 * a number written in decimal notation ("-1.5", "+3"), which runs nothing.
 * The batch job's CSV output (batch/io/output.py) applies the same rule.
 * @param {string} text
 * @returns {string}
 */
export function spreadsheetText(text) {
  return FORMULA_START.test(text) && !DECIMAL.test(text) ? `'${text}` : text;
}

/**
 * Render rows as CSV text (RFC 4180). Text cells go through `spreadsheetText`
 * (numbers and booleans are no text and stay as they are); a cell holding a
 * comma, quote or line break, or the ";" or tab other locales split on, is
 * quoted, so no spreadsheet splits it into a cell that starts a formula.
 * @param {string[]} header
 * @param {Array<Array<unknown>>} rows
 * @returns {string}
 */
export function toCsv(header, rows) {
  const cell = (value) => {
    let text = "";
    if (typeof value === "string") text = spreadsheetText(value);
    else if (value !== null && value !== undefined) text = String(value);
    return /[",;\t\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [header, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
}
