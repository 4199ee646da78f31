// DOM and formatting helpers. Everything from the API goes in as text (never innerHTML).

export const $ = (id) => document.getElementById(id);

/** h('a', {href, class, onclick}, ...children): one element; null/false children are skipped. */
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const SI = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
const trim = (s) => String(parseFloat(s));

/** A metric value, short: 0.9123, 2.13M, 1.5e-5; null (NaN/inf in the API) is a dash. */
export function fmt(v) {
  if (v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return '—';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a >= 1e4) for (const [s, u] of SI) if (a >= s) return `${trim((v / s).toPrecision(3))}${u}`;
  if (a !== 0 && a < 1e-3) return v.toExponential(2);
  return trim(v.toPrecision(4));
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** Show an error (an ApiError's detail, or any Error) in the banner at the top. */
export function showError(err) {
  const status = err && err.status ? `${err.status}: ` : '';
  let text = `${status}${err && err.message ? err.message : String(err)}`;
  if (err && err.status === 401) text += ' Enter a valid API token above.';
  $('error-text').textContent = text;
  $('error').hidden = false;
}

export function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

export const ACTIVE = new Set(['pending', 'running']);

export function badge(el, status) {
  el.textContent = status;
  el.className = `badge ${status}`;
}

/** k / N trials of a search job (N from the spec's budget, when it has one); steps of a train job. */
export function progress(detail) {
  const train = detail.train;
  if (train && train.total_steps) {
    const step = train.step ?? 0;
    return { frac: Math.min(1, step / train.total_steps), text: `${step} / ${train.total_steps} steps` };
  }
  const done = detail.trials ?? 0;
  const budget = detail.spec && detail.spec.budget ? detail.spec.budget.trials : null;
  const frac = budget ? Math.min(1, done / budget) : detail.status === 'finished' ? 1 : 0;
  const text = budget ? `${done} / ${budget} trials` : `${done} trials`;
  return { frac, text };
}
