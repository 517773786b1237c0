// CSV for the demo page: rows go out in the model's feature order; a bad cell is named, not sent.

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
 * Turn parsed CSV rows into numeric rows in the model's feature order.
 * A first row whose cells are all numbers is data (columns in model order);
 * otherwise it is a header naming the features.
 * @param {string[][]} table from parseCsv
 * @param {string[]} names the model's feature names (or x0..xN when it has none)
 * @param {boolean} named whether the model was trained with feature names
 * @returns {{rows: number[][], ignored: string[]}}
 */
export function csvToRows(table, names, named) {
  // Blank lines (often a trailing one) carry no row.
  const lines = table
    .map((cells, index) => ({ cells, line: index + 1 }))
    .filter(({ cells }) => cells.some((cell) => cell.trim() !== ""));
  if (lines.length === 0) throw new CsvError("the file has no rows");
  const first = lines[0].cells;
  const hasHeader = !first.every(isNumber);
  let columns = names.map((_, i) => i);
  let ignored = [];
  if (hasHeader) {
    const header = first.map((cell) => cell.trim());
    const duplicate = header.find((name, i) => header.indexOf(name) !== i);
    if (duplicate !== undefined) {
      throw new CsvError(`the header names the column "${duplicate}" twice`);
    }
    const missing = names.filter((name) => !header.includes(name));
    if (missing.length === 0) {
      columns = names.map((name) => header.indexOf(name));
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
  const label = (i) => (hasHeader ? `column "${first[i].trim()}"` : `column ${i + 1}`);
  const rows = data.map(({ cells, line }) => {
    if (cells.length !== width) {
      throw new CsvError(`line ${line} has ${cells.length} values; expected ${width}`);
    }
    return columns.map((column) => {
      const cell = cells[column];
      if (!isNumber(cell)) {
        throw new CsvError(
          `line ${line}, ${label(column)}: ${JSON.stringify(cell)} is not a number`,
        );
      }
      return Number(cell);
    });
  });
  return { rows, ignored };
}

function isNumber(cell) {
  // Number("") is 0 and Number("0x1f") is 31: accept only decimal notation.
  const decimal = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
  return decimal.test(cell) && Number.isFinite(Number(cell));
}

/**
 * Render rows as CSV text (RFC 4180), quoting only where needed.
 * @param {string[]} header
 * @param {Array<Array<unknown>>} rows
 * @returns {string}
 */
export function toCsv(header, rows) {
  const cell = (value) => {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [header, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
}
