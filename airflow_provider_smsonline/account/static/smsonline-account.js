// The page "SMS.online" in Airflow's UI (airflow-provider-smsonline). Plain JavaScript, no build
// step: Airflow's UI loads this file with import() and renders the component it leaves on
// globalThis under the page's name, with the UI's own React (globalThis.React, Airflow 3.1+).
// Colours, fonts and radii are the UI's Chakra theme variables, so the page follows its light and
// dark modes. It asks only its own routes (smsonline-account/api/...), never SMS.online, and
// shows what they answer; it changes nothing.
const React = globalThis.React;
const h = React.createElement;
const { useEffect, useState } = React;

const API = "smsonline-account/api/";
const REFRESH_MS = 60_000;
const v = (name, fallback) => `var(--chakra-${name}, ${fallback})`;
const C = {
  fg: v("colors-fg", "#1a202c"),
  muted: v("colors-fg-muted", "#4a5568"),
  border: v("colors-border", "#e2e8f0"),
  subtle: v("colors-bg-subtle", "rgba(127,127,127,0.08)"),
  error: v("colors-fg-error", "#c53030"),
  radius: v("radii-md", "6px"),
};
const SERIES = ["blue", "teal", "orange", "purple", "pink", "cyan", "green", "yellow", "red"].map((hue, i) =>
  v(`colors-${hue}-500`, ["#3182ce", "#319795", "#dd6b20", "#805ad5", "#d53f8c", "#00b5d8", "#38a169", "#d69e2e", "#e53e3e"][i]),
);
const UNOWNED = v("colors-gray-400", "#a0aec0");
const TICK = { fontSize: "11px", fill: C.muted };

// --------------------------------------------------------------------------- data

// Airflow 3.1.0's UI keeps its token in localStorage and sends it as a header (later ones use the
// _token cookie): once the header was needed, it is sent first.
let bearerFirst = false;

async function getJson(path) {
  const url = new URL(API + path, document.baseURI);
  const token = globalThis.localStorage?.getItem("token");
  const ask = (bearer) =>
    fetch(url, {
      credentials: "same-origin",
      headers: bearer && token ? { Accept: "application/json", Authorization: `Bearer ${token}` } : { Accept: "application/json" },
    });
  let answer = await ask(bearerFirst);
  if (answer.status === 401 && token && !bearerFirst) {
    answer = await ask(true);
    bearerFirst = answer.ok;
  }
  if (!answer.ok) {
    const error = new Error(answer.status === 401 ? "Sign in to Airflow to see this page." : `${answer.status} ${answer.statusText}`);
    error.status = answer.status;
    throw error;
  }
  return answer.json();
}

function usePolled(path, deps) {
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    if (path === null) return undefined;
    let live = true;
    const load = () =>
      getJson(path).then(
        (data) => live && setState({ data, error: null }),
        (error) => live && setState((old) => ({ data: old.data, error: error.message })),
      );
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, deps);
  return state;
}

// --------------------------------------------------------------------------- pieces

const cell = { padding: "6px 10px", borderBottom: `1px solid ${C.border}`, textAlign: "left", verticalAlign: "top" };
const headCell = { ...cell, color: C.muted, fontWeight: 600, fontSize: "0.85em", whiteSpace: "nowrap" };

function Table({ label, columns, rows, empty }) {
  if (rows.length === 0) return h("p", { style: { color: C.muted, margin: "4px 0 12px" } }, empty);
  return h(
    "div",
    { style: { overflowX: "auto", marginBottom: 12 } },
    h(
      "table",
      { "aria-label": label, style: { borderCollapse: "collapse", width: "100%", fontSize: "0.9em" } },
      h("thead", null, h("tr", null, columns.map((c) => h("th", { key: c, style: headCell, scope: "col" }, c)))),
      h(
        "tbody",
        null,
        rows.map((row) => h("tr", { key: row.key }, row.cells.map((value, i) => h("td", { key: i, style: cell }, value ?? "—")))),
      ),
    ),
  );
}

function Section({ title, children, note }) {
  return h(
    "section",
    { style: { marginTop: 16 } },
    h("h3", { style: { fontSize: "1.05em", fontWeight: 600, margin: "0 0 6px" } }, title),
    note ? h("p", { style: { color: C.muted, fontSize: "0.85em", margin: "0 0 6px" } }, note) : null,
    children,
  );
}

function Problem({ text }) {
  return text ? h("p", { role: "alert", style: { color: C.error, margin: "4px 0" } }, text) : null;
}

const link = (href, text) => h("a", { href: new URL(href, document.baseURI).href, style: { color: "inherit", textDecoration: "underline" } }, text);

function PaidBy({ payer }) {
  if (!payer) return h("span", { style: { color: C.muted } }, "not a DAG (no charge record)");
  if (payer.hidden) return h("span", { style: { color: C.muted } }, "a DAG you may not see");
  const dag = encodeURIComponent(payer.dag_id);
  const run = encodeURIComponent(payer.run_id);
  const task = payer.task_id + (payer.map_index >= 0 ? `[${payer.map_index}]` : "");
  return h(
    "span",
    null,
    link(`dags/${dag}`, payer.dag_id),
    " / ",
    link(`dags/${dag}/runs/${run}/tasks/${encodeURIComponent(payer.task_id)}`, task),
    h("br"),
    h("span", { style: { color: C.muted, fontSize: "0.85em" } }, "run ", link(`dags/${dag}/runs/${run}`, payer.run_id)),
  );
}

const phone = (number) => (number ? (/^\d+$/.test(number) ? `+${number}` : number) : "—");

function LastSms({ sms }) {
  if (!sms) return h("span", { style: { color: C.muted } }, "none yet");
  return h(
    "span",
    null,
    h("span", { style: { whiteSpace: "pre-wrap" } }, sms.text),
    h("br"),
    h("span", { style: { color: C.muted, fontSize: "0.85em" } }, `from ${sms.sender}, ${sms.date}`),
  );
}

function SpendChart({ days, spend }) {
  const series = [];
  const index = new Map();
  for (const row of spend) {
    const name = row.hidden ? "DAGs you may not see" : row.dag_id ?? "not a DAG (no charge record)";
    if (!index.has(name)) {
      index.set(name, series.length);
      series.push({ name, color: row.hidden || row.dag_id === null ? UNOWNED : SERIES[index.size % SERIES.length], total: 0, byDay: {} });
    }
    const s = series[index.get(name)];
    s.byDay[row.day] = (s.byDay[row.day] ?? 0) + Number(row.amount);
    s.total += Number(row.amount);
  }
  if (series.length === 0) return h("p", { style: { color: C.muted, margin: "4px 0 12px" } }, "Nothing spent in these days.");
  const perDay = days.map((day) => series.reduce((sum, s) => sum + (s.byDay[day] ?? 0), 0));
  const top = Math.max(...perDay, 0.01);
  const W = 760, H = 180, left = 48, right = 24, bottom = 22, bar = (W - left - right) / days.length;
  const y = (value) => H - bottom - (value / top) * (H - bottom - 8);
  const bars = [];
  days.forEach((day, d) => {
    let base = 0;
    for (const s of series) {
      const value = s.byDay[day] ?? 0;
      if (value <= 0) continue;
      bars.push(
        h("rect", { key: `${day}-${s.name}`, x: left + d * bar + 1, width: Math.max(bar - 2, 1), y: y(base + value), height: y(base) - y(base + value), fill: s.color },
          h("title", null, `${day}: ${s.name} ${value.toFixed(2)}`)),
      );
      base += value;
    }
  });
  const axis = [0, top / 2, top].map((value) =>
    h("text", { key: value, x: left - 6, y: y(value) + 4, textAnchor: "end", style: TICK }, value.toFixed(2)),
  );
  const labels = days
    .map((day, d) => (d % 5 === 0 || d === days.length - 1 ? h("text", { key: day, x: left + d * bar + bar / 2, y: H - 6, textAnchor: "middle", style: TICK }, day.slice(5)) : null))
    .filter(Boolean);
  return h(
    "div",
    null,
    h("svg", { role: "img", "aria-label": "Spend per day and DAG", viewBox: `0 0 ${W} ${H}`, style: { width: W, maxWidth: "100%", display: "block" } },
      h("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, stroke: C.border }),
      axis, bars, labels),
    h(
      "ul",
      { "aria-label": "Spend per DAG", style: { listStyle: "none", padding: 0, margin: "6px 0 12px", display: "flex", flexWrap: "wrap", gap: "4px 16px", fontSize: "0.85em" } },
      series.map((s) =>
        h("li", { key: s.name }, h("span", { style: { display: "inline-block", width: 10, height: 10, background: s.color, marginRight: 6, borderRadius: 2 } }), `${s.name}: ${s.total.toFixed(2)}`),
      ),
    ),
  );
}

// --------------------------------------------------------------------------- one connection

function Account({ connId }) {
  const path = `connections/${encodeURIComponent(connId)}/`;
  const summary = usePolled(path + "summary", [connId]);
  const rentals = usePolled(path + "rentals", [connId]);
  const s = summary.data, r = rentals.data;
  return h(
    "article",
    { "aria-label": `SMS.online account of ${connId}`, style: { border: `1px solid ${C.border}`, borderRadius: C.radius, padding: 16, marginBottom: 16 } },
    h(
      "header",
      { style: { display: "flex", alignItems: "baseline", gap: 24, flexWrap: "wrap" } },
      h("h2", { style: { fontSize: "1.2em", fontWeight: 600, margin: 0 } }, connId),
      h(
        "div",
        { "aria-label": "Balance" },
        h("span", { style: { color: C.muted, marginRight: 8 } }, "Balance"),
        h("strong", { style: { fontSize: "1.4em" } }, s?.balance ?? (summary.error || s?.error ? "—" : "…")),
      ),
      s ? h("span", { style: { color: C.muted, fontSize: "0.8em" } }, `read ${new Date(s.read_at).toLocaleTimeString()}`) : null,
    ),
    h(Problem, { text: summary.error ?? s?.error }),
    h(
      Section,
      { title: `Active rentals${r ? ` (${r.rentals.length})` : ""}`, note: "Dates as SMS.online writes them: its server's time, zone not stated. Ends: the start plus the rental's hours." },
      h(Problem, { text: rentals.error ?? r?.error }),
      r
        ? h(Table, {
            label: "Active rentals",
            columns: ["Number", "Rental", "Hours", "Price", "Ends (server time)", "Last SMS", "Paid by (DAG / task, run)"],
            empty: "No active rentals.",
            rows: r.rentals.map((x) => ({
              key: x.id,
              cells: [phone(x.number), String(x.id), x.hours, x.price, x.ends, h(LastSms, { sms: x.last_sms }), h(PaidBy, { payer: x.paid_by })],
            })),
          })
        : h("p", { style: { color: C.muted } }, rentals.error ? "" : "Reading SMS.online…"),
      r && r.unchecked > 0 ? h("p", { style: { color: C.muted, fontSize: "0.85em" } }, `${r.unchecked} older rentals are checked at the next readings.`) : null,
    ),
    h(
      Section,
      { title: `Active activations${s ? ` (${s.activations.length})` : ""}` },
      s
        ? h(Table, {
            label: "Active activations",
            columns: ["Number", "Activation", "Service", "Country", "Status", "Cost", "Paid by (DAG / task, run)"],
            empty: "No active activations.",
            rows: s.activations.map((x) => ({
              key: x.id,
              cells: [phone(x.number), String(x.id), x.service, x.country, x.status, x.cost, h(PaidBy, { payer: x.paid_by })],
            })),
          })
        : null,
    ),
    h(
      Section,
      { title: "Spend, last 30 days", note: "Rentals and activations by the day they began (server dates) and the DAG that paid, from getRentHistory and getHistory." },
      r ? h(SpendChart, { days: r.days, spend: r.spend }) : null,
    ),
  );
}

// --------------------------------------------------------------------------- the page

function SmsOnlinePage() {
  const list = usePolled("connections", []);
  const ids = list.data?.connections ?? [];
  return h(
    "div",
    { style: { padding: "8px 4px", color: C.fg, maxWidth: 1400 } },
    h("h1", { style: { fontSize: "1.5em", fontWeight: 700, margin: "0 0 4px" } }, "SMS.online"),
    h(
      "p",
      { style: { color: C.muted, margin: "0 0 16px", fontSize: "0.9em" } },
      "Read-only: the account of each SMS.online connection you may see.",
      list.data
        ? ` SMS.online is asked at most every ${list.data.summary_ttl} s for the balance and activations and every ${list.data.rentals_ttl} s for rentals and spend, however many people look.`
        : "",
    ),
    h(Problem, { text: list.error }),
    list.data && ids.length === 0 ? h("p", null, "No SMS.online connection you may see.") : null,
    ids.map((id) => h(Account, { key: id, connId: id })),
  );
}

globalThis["SMS.online"] = SmsOnlinePage;
globalThis.AirflowPlugin = SmsOnlinePage;
export default SmsOnlinePage;
