// Small SVG charts: a scatter (the Pareto plot) and a line (hypervolume), on shared axes code.
import { fmt } from './util.js';

const NS = 'http://www.w3.org/2000/svg';
const M = { left: 64, right: 18, top: 14, bottom: 46 };

export function s(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  if (parent) parent.append(el);
  return el;
}

/** About `n` round tick values covering [lo, hi]. */
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (hi === lo) {
    const pad = Math.abs(lo) * 0.1 || 1;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.06;
  return [lo - pad, hi + pad];
}

/** Clear `svg`, draw grid, ticks and labels for xs/ys; return the scales and the plot group. */
function frame(svg, xs, ys, xLabel, yLabel) {
  // Drawn in CSS pixels (text keeps its size at any width); the caller redraws on resize.
  const box = svg.getBoundingClientRect();
  const W = Math.max(240, Math.round(box.width) || 640);
  const H = Math.max(120, Math.round(box.height) || 420);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const sx = (v) => M.left + ((v - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const axes = s('g', { class: 'axes' }, svg);
  for (const t of ticks(x0, x1, W > 400 ? 7 : 4)) {
    s('line', { x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom, class: 'grid' }, axes);
    s('text', { x: sx(t), y: H - M.bottom + 16, class: 'tick', 'text-anchor': 'middle' }, axes).textContent = fmt(t);
  }
  for (const t of ticks(y0, y1, H > 300 ? 6 : 4)) {
    s('line', { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t), class: 'grid' }, axes);
    s('text', { x: M.left - 6, y: sy(t) + 4, class: 'tick', 'text-anchor': 'end' }, axes).textContent = fmt(t);
  }
  s('rect', { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, class: 'box' }, axes);
  const xl = s('text', { x: (M.left + W - M.right) / 2, y: H - 8, class: 'label', 'text-anchor': 'middle' }, axes);
  xl.textContent = xLabel;
  const cy = (M.top + H - M.bottom) / 2;
  const turn = `rotate(-90 14 ${cy})`;
  const yl = s('text', { x: 14, y: cy, class: 'label', 'text-anchor': 'middle', transform: turn }, axes);
  yl.textContent = yLabel;
  return { sx, sy, g: s('g', { class: 'marks' }, svg) };
}

/**
 * The Pareto plot: `points` [{x, y, number, front, feasible}]; front points are drawn last
 * (on top) and joined by a dashed line in x order.
 */
export function scatter(svg, points, xLabel, yLabel) {
  const { sx, sy, g } = frame(svg, points.map((p) => p.x), points.map((p) => p.y), xLabel, yLabel);
  const front = points.filter((p) => p.front).sort((a, b) => a.x - b.x || a.y - b.y);
  if (front.length > 1) {
    s('polyline', { class: 'front-line', points: front.map((p) => `${sx(p.x)},${sy(p.y)}`).join(' ') }, g);
  }
  const order = [...points.filter((p) => !p.front), ...front];
  for (const p of order) {
    const cls = ['pt', p.front ? 'front' : '', p.feasible ? '' : 'infeasible'].filter(Boolean).join(' ');
    s('circle', { cx: sx(p.x), cy: sy(p.y), r: p.front ? 6 : 4.5, class: cls, 'data-number': p.number }, g);
  }
}

/** A line chart of [[x, y], ...] (nulls skipped) with a dot per point. */
export function line(svg, pairs, xLabel, yLabel) {
  const ok = pairs.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const { sx, sy, g } = frame(svg, ok.map((p) => p[0]), ok.map((p) => p[1]), xLabel, yLabel);
  if (ok.length > 1) s('polyline', { class: 'hv-line', points: ok.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' ') }, g);
  for (const [x, y] of ok) s('circle', { cx: sx(x), cy: sy(y), r: 2.5, class: 'hv-pt' }, g);
}
