// Device and budget filters: inputs -> a `where` string for GET /trials and /pareto.
import { $, h } from './util.js';

/** The metrics a device selection shows: device-free ones plus those measured on `device`. */
export function onDevice(metrics, device) {
  return metrics.filter((m) => !device || !m.device || m.device === device);
}

function bound(input, key, op) {
  const raw = input.value.trim();
  if (raw === '') return null;
  const v = Number(raw);
  const side = op === '>=' ? 'min' : 'max';
  if (!Number.isFinite(v)) throw new Error(`The ${side} of ${key} must be a number, got '${raw}'.`);
  return `${key} ${op} ${raw}`;
}

export class Filters {
  /** @param metrics the job's metric definitions; @param onChange(device) when the device changes */
  constructor(metrics, onChange) {
    this.metrics = metrics;
    const devices = [...new Set(metrics.map((m) => m.device).filter(Boolean))].sort();
    const sel = $('device');
    sel.replaceChildren(h('option', { value: '' }, devices.length ? 'all devices' : 'none (no device metrics)'),
      ...devices.map((d) => h('option', { value: d }, d)));
    sel.value = devices.length === 1 ? devices[0] : '';
    sel.disabled = devices.length === 0;
    sel.onchange = () => {
      this.renderBudgets();
      onChange(this.device);
    };
    this.renderBudgets();
  }

  get device() {
    return $('device').value;
  }

  renderBudgets() {
    const kept = new Map([...$('budgets').querySelectorAll('input')].map((i) => [i.name, i.value]));
    const rows = onDevice(this.metrics, this.device).map((m) => {
      const input = (side) => h('input', {
        type: 'text', inputmode: 'decimal', name: `${side}:${m.key}`, value: kept.get(`${side}:${m.key}`) || '',
        placeholder: side === 'min' && m.min !== null && m.min !== undefined ? String(m.min)
          : side === 'max' && m.max !== null && m.max !== undefined ? String(m.max) : '',
        'aria-label': `${side} ${m.key}`,
      });
      return h('tr', {}, h('th', { title: `${m.direction}${m.objective ? ', objective' : ''}` }, m.key),
        h('td', {}, input('min')), h('td', {}, input('max')));
    });
    $('budgets').replaceChildren(...rows);
  }

  /** The filter: budgets of the shown metrics and the extra text, joined with `and`. */
  where() {
    const parts = [];
    for (const row of $('budgets').querySelectorAll('tr')) {
      const [lo, hi] = row.querySelectorAll('input');
      const key = lo.name.slice(4);
      for (const part of [bound(lo, key, '>='), bound(hi, key, '<=')]) if (part) parts.push(part);
    }
    const extra = $('where-extra').value.trim();
    if (extra) parts.push(parts.length ? `(${extra})` : extra);
    return parts.join(' and ');
  }

  get includeInfeasible() {
    return $('infeasible').checked;
  }

  reset() {
    for (const i of $('budgets').querySelectorAll('input')) i.value = '';
    $('where-extra').value = '';
    $('infeasible').checked = false;
  }
}
