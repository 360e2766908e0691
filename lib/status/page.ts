/**
 * `GET /`: one self-contained HTML page (inline CSS and SVG, no scripts,
 * no external assets) an operator reads at a glance, on a desktop or a
 * phone: health banner, tracking, sources with the tally legend, server
 * rates, anycast state and transitions, and the 24 h offset/jitter chart.
 * Pure: snapshot and chart series in, HTML out.
 */
import type { Tally } from "../engine/report.ts";
import { durationLabel, escapeXml as esc, renderChart } from "./chart.ts";
import type { ChartSeries } from "./history.ts";
import type { StatusSnapshot } from "./snapshot.ts";
import { compactSeconds, humanDuration, leapName } from "./text.ts";

/** What each ntpq tally code means, shown under the sources table. */
export const TALLY_LEGEND: [Tally, string][] = [
  ["*", "system peer"],
  ["+", "candidate (combined)"],
  ["-", "outlier (cluster)"],
  ["x", "falseticker"],
  ["#", "backup"],
  [" ", "rejected / not yet usable"],
];

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1d;background:#f2f3f5}
main{max-width:980px;margin:0 auto;padding:12px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 14px;margin-bottom:8px}
h1{font-size:22px;margin:0}
h2{font-size:16px;margin:0 0 8px}
.meta{color:#555;font-size:13px}
.banner{padding:12px 14px;border-radius:8px;font-weight:600;margin-bottom:12px;color:#fff}
.ok{background:#217a3c}.bad{background:#b3261e}
section{background:#fff;border-radius:8px;padding:12px 14px;margin-bottom:12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:6px 16px;margin:0}
dl div{display:flex;justify-content:space-between;gap:8px;border-bottom:1px solid #eee;padding:2px 0}
dt{color:#555}dd{margin:0;font-variant-numeric:tabular-nums;text-align:right;font-weight:500}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:14px}
th,td{padding:4px 8px;text-align:right;white-space:nowrap;border-bottom:1px solid #eee}
th{color:#555;font-weight:600;background:#fafafa}
td.l,th.l{text-align:left}
td.tally{font:bold 15px ui-monospace,monospace;text-align:center}
tr.sys td{background:#eef7ee}
.legend{font-size:12.5px;color:#555;margin-top:6px;display:flex;flex-wrap:wrap;gap:2px 14px}
.legend code{font-weight:bold;color:#1d1d1d}
.muted{color:#777}
svg{width:100%;height:auto;display:block}
.chart svg{min-width:560px}
footer{font-size:13px;color:#555;text-align:center;padding:8px}
footer a{color:#1f5fa8;margin:0 6px}
@media (max-width:520px){body{font-size:14px}main{padding:6px}section{padding:10px}th,td{padding:3px 5px}}
`;

const sec = (s: number) => durationLabel(s === 0 ? 0 : s).replace(/^\+/, "");
/** A signed duration with the unit that fits, e.g. "+12.3 µs". */
function fmtDuration(s: number, signedOut = false): string {
  const a = Math.abs(s);
  let v: string;
  if (a === 0) v = "0 s";
  else if (a < 1e-6) v = `${(a * 1e9).toFixed(0)} ns`;
  else if (a < 1e-3) v = `${(a * 1e6).toFixed(1)} µs`;
  else if (a < 1) v = `${(a * 1e3).toFixed(3)} ms`;
  else v = `${a.toFixed(3)} s`;
  return (s < 0 ? "−" : signedOut && s > 0 ? "+" : "") + v;
}

function dl(rows: [string, string][]): string {
  return `<dl>${
    rows.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join("")
  }</dl>`;
}

function isoUtc(unix: number): string {
  return unix > 0
    ? new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")
    : "never";
}

/** The whole page. */
export function renderPage(s: StatusSnapshot, series: ChartSeries): string {
  const y = s.system;
  const banner = s.health.healthy
    ? `<div class="banner ok" id="health">Healthy — stratum ${y.stratum}, ${
      y.synchronised ? `synchronised to ${esc(y.system_peer || y.refid)}` : "not synchronised"
    }${s.anycast ? `, anycast ${esc(s.anycast.state)}` : ""}</div>`
    : `<div class="banner bad" id="health">Unhealthy — ${esc(s.health.reason)}</div>`;

  const tracking = dl([
    ["Reference ID", y.refid || "-"],
    ["System peer", y.system_peer || "-"],
    ["Stratum", String(y.stratum)],
    ["Leap", leapName(y.leap)],
    ["Last offset", fmtDuration(y.offset_s, true)],
    ["System jitter", fmtDuration(y.jitter_s)],
    ["Frequency", `${y.frequency_ppm.toFixed(3)} ppm`],
    ["Skew", `${y.skew_ppm.toFixed(3)} ppm`],
    ["Root delay", fmtDuration(y.root_delay_s)],
    ["Root dispersion", fmtDuration(y.root_dispersion_s)],
    ["Update interval", `${y.update_interval_s.toFixed(1)} s`],
    ["Ref time (UTC)", isoUtc(y.ref_time)],
    ["Orphan", y.orphan ? "yes" : "no"],
  ]);

  const rows = s.sources.map((r) =>
    `<tr${r.tally === "*" ? ' class="sys"' : ""}><td class="tally">${
      r.tally === " " ? "&nbsp;" : esc(r.tally)
    }</td><td class="l">${esc(r.address)}</td><td class="l">${esc(r.kind)}${
      r.key === undefined
        ? ""
        : ` · key ${r.key} ${r.authenticated ? "authenticated" : "NOT authenticated"}`
    }</td><td class="l">${esc(r.refid)}</td><td>${r.stratum}</td><td>${
      esc(compactSeconds(r.when_s))
    }</td><td>${esc(compactSeconds(2 ** r.poll))}</td><td>${
      r.reach.toString(8).padStart(3, "0")
    }</td><td>${(r.delay_s * 1e3).toFixed(3)}</td><td>${(r.offset_s * 1e3).toFixed(3)}</td><td>${
      (r.jitter_s * 1e3).toFixed(3)
    }</td></tr>`
  );
  const sourcesTable = `<div class="scroll"><table id="sources"><thead><tr><th></th>` +
    `<th class="l">remote</th><th class="l">kind</th><th class="l">refid</th><th>st</th>` +
    `<th>when</th><th>poll</th><th>reach</th><th>delay ms</th><th>offset ms</th><th>jitter ms</th>` +
    `</tr></thead><tbody>${
      rows.join("") ||
      '<tr><td colspan="11" class="l muted">No upstream sources (local stratum or not configured)</td></tr>'
    }</tbody></table></div><div class="legend">${
      TALLY_LEGEND.map(([c, m]) =>
        `<span><code>${c === " " ? "&nbsp;" : esc(c)}</code> ${esc(m)}</span>`
      )
        .join("")
    }</div>`;

  const c = s.server;
  const r = s.server_rates;
  const rate = (v: number | undefined) => (v === undefined ? "–" : v.toFixed(1));
  const dropped = c.dropped.malformed + c.dropped.mode + c.dropped.control +
    c.dropped.rate_limited + c.dropped.denied;
  const server = `<div class="scroll"><table id="server"><thead><tr><th class="l">packets</th>` +
    `<th>per second</th><th>total</th></tr></thead><tbody>` +
    `<tr><td class="l">received</td><td>${
      rate(r?.received_per_s)
    }</td><td>${c.received}</td></tr>` +
    `<tr><td class="l">answered</td><td>${
      rate(r?.answered_per_s)
    }</td><td>${c.answered}</td></tr>` +
    `<tr><td class="l">kiss-o'-death (rate / deny)</td><td>${
      rate(r?.kod_per_s)
    }</td><td>${c.kod_rate} / ${c.kod_deny}</td></tr>` +
    `<tr><td class="l">dropped</td><td>${rate(r?.dropped_per_s)}</td><td>${dropped}</td></tr>` +
    `</tbody></table></div><div class="legend"><span>dropped: malformed ${c.dropped.malformed}, mode ${c.dropped.mode}, control ${c.dropped.control}, rate limited ${c.dropped.rate_limited}, denied ${c.dropped.denied}</span><span>send errors ${c.send_errors}</span><span>${
      r ? `rates over the last ${r.window_s.toFixed(0)} s` : "rates after the first sample"
    }</span><span>${s.workers} worker(s), driver ${esc(s.driver)}</span></div>`;

  const k = s.nts_ke;
  const ntsKe = k
    ? `<section><h2>NTS-KE</h2><div id="nts-ke">${
      dl([
        ["Listen", k.listen.join(", ")],
        ["Key exchanges", `${k.handshakes} (${k.cookies} cookies) of ${k.connections} connections`],
        ["Refused", `${k.refused} no common protocol/AEAD, ${k.record_errors} Error records`],
        ["Closed", `${k.tls_failures} TLS failures, ${k.denied} denied, ${k.busy} busy`],
        [
          "Certificate until",
          k.certificate_not_after === null ? "unknown" : isoUtc(k.certificate_not_after),
        ],
      ])
    }</div></section>\n`
    : "";

  const a = s.anycast;
  const anycast = a === null
    ? `<p class="muted" id="anycast">Anycast is off.</p>`
    : `<div id="anycast">${
      dl([
        ["Mode", a.mode],
        ["State", a.state],
        ["Gate", a.healthy ? "healthy" : `unhealthy: ${a.reason}`],
        ["Announced", a.announced.join(", ") || "-"],
        ["Nexthops", a.nexthops.join(", ") || "-"],
        ...(a.nodes && a.nodes.length > 0
          ? [[
            "Nodes",
            a.nodes.map((n) => `${n.address} ${n.healthy ? "ok" : `down (${n.reason})`}`).join(
              ", ",
            ),
          ] as [string, string]]
          : []),
        ...(a.error ? [["Last apply error", a.error] as [string, string]] : []),
      ])
    }${
      a.transitions.length === 0
        ? '<p class="muted">No transitions yet.</p>'
        : `<div class="scroll"><table><thead><tr><th class="l">time (UTC)</th><th class="l">from</th><th class="l">to</th><th class="l">reason</th></tr></thead><tbody>${
          a.transitions.slice(-20).reverse().map((t) =>
            `<tr><td class="l">${isoUtc(t.at)}</td><td class="l">${esc(t.from)}</td><td class="l">${
              esc(t.to)
            }</td><td class="l">${esc(t.reason)}</td></tr>`
          ).join("")
        }</tbody></table></div>`
    }</div>`;

  const hours = Math.round((series.end - series.start) / 3600);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="16">
<title>edge-time ${esc(s.version)} — ${s.health.healthy ? "healthy" : "UNHEALTHY"}</title>
<style>${CSS}</style></head><body><main>
<header><h1>edge-time</h1><span class="meta">${esc(s.version)} · up ${
    humanDuration(s.uptime_s)
  } · ${esc(isoUtc(s.time))} · NTP on ${esc(s.listen.join(", ") || "-")}</span></header>
${banner}
<section><h2>Tracking</h2>${tracking}</section>
<section><h2>Sources</h2>${sourcesTable}</section>
<section><h2>Offset and jitter, last ${hours} h</h2><div class="scroll chart">${
    renderChart(series)
  }</div><div class="legend"><span>Scale is linear within ±${
    sec(1e-6)
  } and logarithmic beyond; bucket means of one sample per 16 s.</span></div></section>
<section><h2>Server</h2>${server}</section>
${ntsKe}<section><h2>Anycast</h2>${anycast}</section>
</main><footer><a href="/status">/status</a><a href="/status?format=text">text</a><a href="/metrics">/metrics</a><a href="/healthz">/healthz</a></footer></body></html>
`;
}
