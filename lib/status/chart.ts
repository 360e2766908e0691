/**
 * Inline SVG chart of offset and jitter over the history span, system and
 * per source. Offsets span nanoseconds to seconds and both signs, so the
 * offset panel uses a symmetric log scale (linear within ±1 µs, log
 * beyond); jitter uses the positive half of the same scale. Pure: series
 * in, SVG text out; no scripts, sized by viewBox so it fits a phone.
 */
import type { ChartLine, ChartSeries } from "./history.ts";

/** Below this the symmetric log scale is linear, seconds. */
export const LINEAR_THRESHOLD_S = 1e-6;

/** Colours of source lines (the system line is drawn thick and dark). */
export const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
];

/** Symmetric log: sign(v) · log10(1 + |v| / threshold). */
export function symlog(v: number, threshold = LINEAR_THRESHOLD_S): number {
  return Math.sign(v) * Math.log10(1 + Math.abs(v) / threshold);
}

/** "1 µs", "100 ms", "1 s" for a power-of-ten duration. */
export function durationLabel(s: number): string {
  const a = Math.abs(s);
  const sign = s < 0 ? "−" : s > 0 ? "+" : "";
  if (a === 0) return "0";
  const units: [number, string][] = [[1, "s"], [1e-3, "ms"], [1e-6, "µs"], [1e-9, "ns"]];
  for (const [scale, unit] of units) {
    if (a >= scale * 0.999) return `${sign}${+(a / scale).toPrecision(3)} ${unit}`;
  }
  return `${sign}${a.toExponential(0)} s`;
}

/** Escapes text for HTML and SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const W = 720;
const PAD_L = 70;
const PAD_R = 12;
const PAD_T = 22;
const PAD_B = 24;

interface Panel {
  title: string;
  height: number;
  /** Top of the scale in seconds (a power of ten). */
  top: number;
  symmetric: boolean;
  pick: (l: ChartLine) => (number | null)[];
}

function maxAbs(lines: ChartLine[], pick: Panel["pick"]): number {
  let m = 0;
  for (const l of lines) {
    for (const v of pick(l)) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
  }
  return m;
}

function decadeAbove(v: number, floor: number): number {
  return Math.max(floor, 10 ** Math.ceil(Math.log10(Math.max(v, 1e-12))));
}

function renderPanel(p: Panel, series: ChartSeries, lines: ChartLine[], y0: number): string {
  const plotH = p.height - PAD_T - PAD_B;
  const plotW = W - PAD_L - PAD_R;
  const top = symlog(p.top);
  const bottom = p.symmetric ? -top : 0;
  const yOf = (v: number) =>
    y0 + PAD_T + (top - symlog(Math.min(p.top, Math.max(-p.top, v)))) / (top - bottom) * plotH;
  const xOf = (b: number) => PAD_L + (b + 0.5) / series.buckets * plotW;
  const out: string[] = [];
  out.push(
    `<text x="${PAD_L}" y="${y0 + 15}" class="ct">${escapeXml(p.title)}</text>`,
    `<rect x="${PAD_L}" y="${y0 + PAD_T}" width="${plotW}" height="${plotH}" class="cf"/>`,
  );
  // Grid: 0 and every decade from 1 µs to the top, both signs when symmetric.
  const ticks: number[] = [0];
  for (let d = LINEAR_THRESHOLD_S; d <= p.top * 1.001; d *= 10) {
    ticks.push(d);
    if (p.symmetric) ticks.push(-d);
  }
  const minGap = 13; // px between labels, so they never overlap
  let lastLabelY = -Infinity;
  for (const t of ticks.sort((a, b) => b - a)) {
    const y = yOf(t);
    out.push(
      `<line x1="${PAD_L}" x2="${W - PAD_R}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="${
        t === 0 ? "cz" : "cg"
      }"/>`,
    );
    if (y - lastLabelY >= minGap) {
      out.push(
        `<text x="${PAD_L - 4}" y="${(y + 4).toFixed(1)}" class="cy">${
          escapeXml(durationLabel(t))
        }</text>`,
      );
      lastLabelY = y;
    }
  }
  // X axis: hours before now.
  const span = series.end - series.start;
  const stepH = span >= 12 * 3600 ? 3 : span >= 3 * 3600 ? 1 : 0.25;
  for (let h = 0; h * 3600 <= span + 1; h += stepH) {
    const x = PAD_L + (1 - (h * 3600) / span) * plotW;
    out.push(
      `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y0 + PAD_T}" y2="${
        y0 + PAD_T + plotH
      }" class="cg"/>`,
    );
    const label = h === 0 ? "now" : stepH < 1 ? `−${h * 60}m` : `−${h}h`;
    out.push(`<text x="${x.toFixed(1)}" y="${y0 + p.height - 6}" class="cx">${label}</text>`);
  }
  lines.forEach((l, i) => {
    const cls = i === 0 ? "cs" : "";
    const colour = i === 0 ? "#222" : PALETTE[(i - 1) % PALETTE.length]!;
    const dash = i > PALETTE.length ? ' stroke-dasharray="4 3"' : "";
    const values = p.pick(l);
    let seg: string[] = [];
    const flush = () => {
      if (seg.length === 1) {
        const [x, y] = seg[0]!.split(",");
        out.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${colour}"/>`);
      } else if (seg.length > 1) {
        out.push(
          `<polyline points="${seg.join(" ")}" fill="none" stroke="${colour}"${dash}${
            cls ? ` class="${cls}"` : ""
          }/>`,
        );
      }
      seg = [];
    };
    values.forEach((v, b) => {
      if (v === null) return flush();
      seg.push(`${xOf(b).toFixed(1)},${yOf(v).toFixed(1)}`);
    });
    flush();
  });
  return out.join("");
}

/**
 * The chart: an offset panel and a jitter panel sharing the time axis,
 * with a legend naming the system line and each source's colour.
 */
export function renderChart(series: ChartSeries): string {
  const lines = [series.system, ...series.sources];
  const offsetTop = decadeAbove(maxAbs(lines, (l) => l.offset_s), 1e-5);
  const jitterTop = decadeAbove(maxAbs(lines, (l) => l.jitter_s), 1e-5);
  const panels: Panel[] = [
    {
      title: "Offset (symmetric log scale)",
      height: 250,
      top: offsetTop,
      symmetric: true,
      pick: (l) => l.offset_s,
    },
    {
      title: "Jitter (log scale)",
      height: 170,
      top: jitterTop,
      symmetric: false,
      pick: (l) => l.jitter_s,
    },
  ];
  const legendRows = Math.ceil(lines.length / 3);
  const legendH = 8 + legendRows * 18;
  const total = panels.reduce((a, p) => a + p.height, 0) + legendH;
  const body: string[] = [];
  let y = 0;
  for (const p of panels) {
    body.push(renderPanel(p, series, lines, y));
    y += p.height;
  }
  lines.forEach((l, i) => {
    const colour = i === 0 ? "#222" : PALETTE[(i - 1) % PALETTE.length]!;
    const lx = PAD_L + (i % 3) * 216;
    const ly = y + 14 + Math.floor(i / 3) * 18;
    body.push(
      `<rect x="${lx}" y="${ly - 8}" width="14" height="${i === 0 ? 4 : 3}" fill="${colour}"/>`,
      `<text x="${lx + 20}" y="${ly}" class="cl">${escapeXml(l.label)}</text>`,
    );
  });
  const hasData = lines.some((l) => l.offset_s.some((v) => v !== null));
  if (!hasData) {
    body.push(
      `<text x="${W / 2}" y="${PAD_T + 110}" class="cn">No samples yet (one every 16 s)</text>`,
    );
  }
  return `<svg id="history-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${total}" role="img" aria-label="Offset and jitter over the last ${
    Math.round((series.end - series.start) / 3600)
  } h"><style>.ct{font:bold 14px sans-serif;fill:#222}.cf{fill:#fbfbfb;stroke:#ccc}.cg{stroke:#e4e4e4;stroke-width:1}.cz{stroke:#999;stroke-width:1}.cy{font:12px sans-serif;fill:#555;text-anchor:end}.cx{font:12px sans-serif;fill:#555;text-anchor:middle}.cl{font:14px sans-serif;fill:#222}.cn{font:13px sans-serif;fill:#888;text-anchor:middle}polyline{stroke-width:1.4;stroke-linejoin:round}.cs{stroke-width:2.4}</style>${
    body.join("")
  }</svg>`;
}
