// Bar charts drawn as inline SVG (no library, nothing from another origin). Each chart is
// built at its container's pixel width so the text stays legible at any screen size, is
// labelled for screen readers (role="img" + aria-label + <title>), and comes with the
// same numbers as a table under a <details>.

import { el } from "/static/api.js";
import { fmtPercent as pct } from "/static/admin-ui.js";

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// The smallest "round" number at or above value; even steps keep the half-way tick round.
function niceMax(value, integer) {
  if (!(value > 0)) return integer ? 2 : 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const top = [1, 2, 4, 6, 8, 10].map((m) => m * power).find((m) => m >= value - 1e-9);
  return integer ? Math.max(2, Math.ceil(top)) : top;
}

export function shortDate(iso) {
  return new Date(`${iso}T00:00:00Z`).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

function frame(width, height, label) {
  return svg(
    "svg",
    { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart-svg", focusable: "false" },
    svg("title", {}, label),
  );
}

function dataTable(headers, rows) {
  return el(
    "details",
    { class: "chart-data" },
    el("summary", {}, "Show as table"),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
    ),
  );
}

// One vertical bar per day. points: [{date: "YYYY-MM-DD", value}]; format(value) → text.
export function dayBars({ title, points, format, integer = false, width }) {
  const height = 190;
  const margin = { left: 48, right: 22, top: 18, bottom: 28 };
  const plotW = Math.max(width - margin.left - margin.right, 60);
  const plotH = height - margin.top - margin.bottom;
  const values = points.map((p) => p.value);
  const max = niceMax(Math.max(0, ...values), integer);
  const total = values.reduce((a, b) => a + b, 0);
  const busiest = points.reduce((best, p) => (p.value > best.value ? p : best), points[0]);
  const today = points[points.length - 1];
  const label =
    `${title}, ${points.length} days: ${format(total)} in total` +
    (total > 0 ? `, most on ${shortDate(busiest.date)} (${format(busiest.value)})` : "") +
    `; today ${format(today.value)}.`;

  const chart = frame(width, height, label);
  const baseY = margin.top + plotH;
  for (const fraction of [0, 0.5, 1]) {
    const y = baseY - plotH * fraction;
    chart.append(
      svg("line", { x1: margin.left, x2: margin.left + plotW, y1: y, y2: y, class: fraction ? "grid" : "axis" }),
      svg("text", { x: margin.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, format(max * fraction)),
    );
  }
  const slot = plotW / points.length;
  const barW = Math.max(2, Math.min(36, slot * 0.72));
  const labelEvery = Math.max(1, Math.ceil(52 / slot)); // keep day labels ~52 px apart
  points.forEach((point, i) => {
    const x = margin.left + slot * i + (slot - barW) / 2;
    const h = point.value > 0 ? Math.max(2, (plotH * point.value) / max) : 0;
    chart.append(
      svg(
        "rect",
        { x, y: baseY - h, width: barW, height: h, class: "bar", "data-date": point.date, "data-value": point.value },
        svg("title", {}, `${shortDate(point.date)}: ${format(point.value)}`),
      ),
    );
    if (point.value > 0 && (slot >= 26 || point === busiest)) {
      chart.append(svg("text", { x: x + barW / 2, y: baseY - h - 4, "text-anchor": "middle", class: "value" }, format(point.value)));
    }
    if ((points.length - 1 - i) % labelEvery === 0) {
      chart.append(svg("text", { x: x + barW / 2, y: baseY + 17, "text-anchor": "middle", class: "tick" }, shortDate(point.date)));
    }
  });
  return [chart, dataTable(["Day", title], points.map((p) => [p.date, format(p.value)]))];
}

// Horizontal bars of a 0..1 rate, one per row. rows: [{name, rate, failed, ended}].
export function rateBars({ title, rows, width }) {
  if (!rows.length) return [el("p", { class: "muted" }, "No finished tasks in this period.")];
  const rowH = 30;
  const longest = Math.max(...rows.map((r) => r.name.length));
  const margin = { left: Math.min(Math.max(60, longest * 7.5 + 12), width * 0.35), right: 92, top: 8, bottom: 24 };
  const plotW = Math.max(width - margin.left - margin.right, 60);
  const height = margin.top + rows.length * rowH + margin.bottom;
  const label = `${title}: ${rows.map((r) => `${r.name} ${pct(r.rate)} (${r.failed} of ${r.ended} finished tasks failed)`).join("; ")}.`;
  const chart = frame(width, height, label);
  rows.forEach((row, i) => {
    const y = margin.top + i * rowH;
    const barW = row.rate > 0 ? Math.max(2, plotW * row.rate) : 0;
    const name = row.name.length * 7.5 > margin.left - 12 ? `${row.name.slice(0, Math.floor((margin.left - 20) / 7.5))}…` : row.name;
    chart.append(
      svg("text", { x: margin.left - 8, y: y + 19, "text-anchor": "end", class: "tick" }, name, svg("title", {}, row.name)),
      svg("rect", { x: margin.left, y: y + 6, width: plotW, height: 18, class: "track" }),
      svg(
        "rect",
        { x: margin.left, y: y + 6, width: barW, height: 18, class: "bar bad", "data-provider": row.name, "data-rate": row.rate },
        svg("title", {}, `${row.name}: ${pct(row.rate)}`),
      ),
      svg("text", { x: margin.left + plotW + 6, y: y + 19, class: "value" }, `${pct(row.rate)} (${row.failed}/${row.ended})`),
    );
  });
  const axisY = margin.top + rows.length * rowH + 14;
  for (const fraction of [0, 0.5, 1]) {
    chart.append(svg("text", { x: margin.left + plotW * fraction, y: axisY, "text-anchor": "middle", class: "tick" }, pct(fraction)));
  }
  return [
    chart,
    dataTable(
      ["Provider", "Failure rate", "Failed", "Finished"],
      rows.map((r) => [r.name, pct(r.rate), String(r.failed), String(r.ended)]),
    ),
  ];
}
