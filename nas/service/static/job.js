// A job's page: live progress, the Pareto plot of any two metrics under filters, the trials
// table, and exports of a selected trial.
import { api, jobPath, query } from './api.js';
import { exportTrial } from './export.js';
import { Filters, onDevice } from './filters.js';
import { line, scatter } from './plot.js';
import { $, ACTIVE, badge, clearError, fmt, h, progress, showError, when } from './util.js';

const LIMIT = 5000; // trials fetched for the plot and table
const ROWS = 500; // table rows drawn
const POLL_MS = 1500;

class JobPage {
  constructor(id) {
    this.id = id;
    this.detail = null;
    this.metrics = [];
    this.trials = [];
    this.front = new Set();
    this.byNumber = new Map();
    this.selected = null;
    this.seq = 0;
    this.filters = null;
  }

  async start() {
    $('job-page').hidden = false;
    try {
      this.detail = await api(jobPath(this.id));
    } catch (err) {
      $('job-name').textContent = `Job ${this.id}`;
      showError(err);
      return;
    }
    this.metrics = this.detail.metrics;
    this.head();
    if (!this.metrics.length) {
      $('job-body').hidden = $('trials-card').hidden = true;
      $('no-metrics').hidden = false;
      $('no-metrics').textContent = `This ${this.detail.kind} job has no trial metrics to plot.`;
      if (ACTIVE.has(this.detail.status)) setTimeout(() => this.poll(), POLL_MS);
      return;
    }
    this.filters = new Filters(this.metrics, () => this.deviceChanged());
    this.axisOptions();
    this.wire();
    await this.refresh();
    if (ACTIVE.has(this.detail.status)) setTimeout(() => this.poll(), POLL_MS);
  }

  // ----------------------------------------------------------------------- progress (polled)
  head() {
    const d = this.detail;
    document.title = `${d.name} · hwnas`;
    $('job-name').textContent = d.name;
    badge($('job-status'), d.status);
    const seen = new Set(($('job-status').dataset.seen || '').split(' ').filter(Boolean)).add(d.status);
    $('job-status').dataset.seen = [...seen].join(' '); // every status this page has shown
    const objectives = this.metrics.filter((m) => m.objective).map((m) => `${m.key} (${m.direction})`);
    const items = [['ID', d.id], ['Kind', d.kind], ['Owner', d.owner], ['Evaluator', d.spec?.evaluator?.kind],
      ['Objectives', objectives.join(', ')], ['Created', when(d.created_at)], ['Updated', when(d.updated_at)]];
    const shown = items.filter(([, v]) => v);
    $('job-meta').replaceChildren(...shown.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
    const p = progress(d);
    $('job-bar').style.width = `${Math.round(p.frac * 100)}%`;
    $('job-progress').textContent = p.text;
    $('job-error').hidden = !d.error;
    $('job-error').textContent = d.error || '';
    this.drawHv();
  }

  drawHv() {
    const hv = this.detail.hypervolume_history || [];
    if (hv.length) line($('hv'), hv, 'evaluations', 'hypervolume');
    else $('hv').replaceChildren();
    $('hv').dataset.points = String(hv.length);
  }

  async poll() {
    const before = this.detail;
    try {
      this.detail = await api(jobPath(this.id));
    } catch (err) {
      showError(err);
      setTimeout(() => this.poll(), POLL_MS * 4);
      return;
    }
    this.head();
    const changed = this.detail.trials !== before.trials || this.detail.status !== before.status;
    if (changed && this.metrics.length) await this.refresh();
    if (ACTIVE.has(this.detail.status)) setTimeout(() => this.poll(), POLL_MS);
  }

  // -------------------------------------------------------------------------------- controls
  shown() {
    return onDevice(this.metrics, this.filters.device);
  }

  axisOptions() {
    const shown = this.shown();
    const keys = shown.map((m) => m.key);
    const objs = shown.filter((m) => m.objective).map((m) => m.key);
    const pick = (cur, fallback) => {
      if (keys.includes(cur)) return cur;
      const same = shown.find((m) => m.name === this.metrics.find((o) => o.key === cur)?.name);
      return same ? same.key : fallback;
    };
    const defaults = [...objs, ...keys.filter((k) => !objs.includes(k))];
    const x = pick($('x-axis').value, defaults[0]);
    const y = pick($('y-axis').value, defaults.find((k) => k !== x) ?? x);
    for (const [sel, val] of [[$('x-axis'), x], [$('y-axis'), y]]) {
      sel.replaceChildren(...keys.map((k) => h('option', { value: k }, k)));
      sel.value = val;
    }
  }

  deviceChanged() {
    this.axisOptions();
    this.refresh();
  }

  wire() {
    $('x-axis').onchange = () => this.refresh();
    $('y-axis').onchange = () => this.refresh();
    $('swap').onclick = () => {
      const x = $('x-axis').value;
      $('x-axis').value = $('y-axis').value;
      $('y-axis').value = x;
      this.refresh();
    };
    $('filters').onsubmit = (e) => {
      e.preventDefault();
      this.refresh();
    };
    $('filters-reset').onclick = () => {
      this.filters.reset();
      this.refresh();
    };
    const svg = $('plot');
    svg.addEventListener('mouseover', (e) => {
      if (e.target.classList.contains('pt')) this.tooltip(e.target);
    });
    svg.addEventListener('mouseout', (e) => {
      if (e.target.classList.contains('pt')) $('tooltip').hidden = true;
    });
    svg.addEventListener('click', (e) => {
      if (e.target.classList.contains('pt')) this.select(Number(e.target.dataset.number));
    });
    $('export').onclick = () => this.exportSelected();
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => this.resized());
    }).observe($('plot-wrap'));
  }

  // ------------------------------------------------------------------------- plot and table
  async refresh() {
    const mine = ++this.seq;
    const svg = $('plot');
    let where;
    try {
      where = this.filters.where();
    } catch (err) {
      showError(err);
      return;
    }
    const x = $('x-axis').value;
    const y = $('y-axis').value;
    svg.dataset.state = 'loading';
    $('where-text').textContent = where || '(none)';
    try {
      const [trials, front] = await Promise.all([
        api(`${jobPath(this.id)}/trials${query({ where, limit: LIMIT })}`),
        api(`${jobPath(this.id)}/pareto${query({
          objectives: `${x},${y}`, where, include_infeasible: this.filters.includeInfeasible || '',
        })}`),
      ]);
      if (mine !== this.seq) return;
      clearError();
      this.trials = trials;
      this.front = new Set(front.map((t) => t.number));
      this.byNumber = new Map(trials.map((t) => [t.number, t]));
      for (const t of front) if (!this.byNumber.has(t.number)) this.byNumber.set(t.number, t);
      this.draw(x, y, where);
      this.table();
      if (this.selected !== null) this.select(this.selected);
      Object.assign(svg.dataset, { state: 'ready', x, y, where, points: String(svg.querySelectorAll('.pt').length) });
    } catch (err) {
      if (mine !== this.seq) return;
      svg.dataset.state = 'error';
      showError(err);
    }
  }

  /** Redraw both charts at the new size (they are drawn in CSS pixels). */
  resized() {
    if (this.drawn) this.draw(...this.drawn);
    if (this.detail) this.drawHv();
  }

  draw(x, y, where) {
    this.drawn = [x, y, where];
    const points = [];
    let missing = 0;
    for (const t of this.byNumber.values()) {
      if (typeof t[x] !== 'number' || typeof t[y] !== 'number') missing += 1;
      else points.push({ x: t[x], y: t[y], number: t.number, feasible: t.feasible, front: this.front.has(t.number) });
    }
    const label = (k) => {
      const m = this.metrics.find((o) => o.key === k);
      return m ? `${k}  ${m.direction === 'maximize' ? '↑' : '↓'} better` : k;
    };
    scatter($('plot'), points, label(x), label(y));
    if (this.selected !== null) $('plot').querySelector(`.pt[data-number="${this.selected}"]`)?.classList.add('sel');
    const notes = [`${points.length} trials`, `${this.front.size} on the front`];
    if (missing) notes.push(`${missing} without ${x} or ${y}`);
    if (this.trials.length >= LIMIT) notes.push(`the first ${LIMIT} trials shown`);
    if (where) notes.push('filtered');
    $('plot-note').textContent = notes.join(' · ');
  }

  table() {
    const shown = this.shown();
    const canExport = this.exportable();
    $('trials-table').tHead.replaceChildren(h('tr', {}, h('th', {}, '#'), h('th', {}, 'arch_id'),
      h('th', {}, 'feasible'), h('th', {}, 'front'), ...shown.map((m) => h('th', { class: 'num' }, m.key)),
      canExport ? h('th', {}, '') : null));
    const rows = [...this.byNumber.values()].sort((a, b) => a.number - b.number).slice(0, ROWS).map((t) => {
      const on = this.front.has(t.number);
      return h('tr', { class: [on ? 'on-front' : '', t.number === this.selected ? 'selected' : ''].join(' '),
        dataset: { number: t.number }, onclick: () => this.select(t.number) },
      h('td', {}, t.number), h('td', {}, h('code', {}, t.arch_id)), h('td', {}, t.feasible ? 'yes' : 'no'),
      h('td', {}, on ? '★' : ''),
      ...shown.map((m) => h('td', { class: 'num', title: String(t[m.key]) }, fmt(t[m.key]))),
      canExport ? h('td', {}, on ? h('button', { type: 'button', class: 'small export-row', onclick: (e) => {
        e.stopPropagation();
        this.select(t.number);
        this.exportSelected();
      } }, 'Export') : '') : null);
    });
    $('trials-table').tBodies[0].replaceChildren(...rows);
    const total = this.byNumber.size;
    $('trials-count').textContent = total > ROWS ? `(${ROWS} of ${total} shown)` : `(${total})`;
  }

  metricList(t) {
    return this.metrics.flatMap((m) => [h('dt', {}, m.key), h('dd', {}, fmt(t[m.key]))]);
  }

  tooltip(circle) {
    const t = this.byNumber.get(Number(circle.dataset.number));
    if (!t) return;
    const tip = $('tooltip');
    tip.replaceChildren(
      h('div', { class: 'tip-title' }, h('strong', {}, `Trial #${t.number}`),
        this.front.has(t.number) ? ' · on the front' : '', t.feasible ? '' : ' · infeasible'),
      h('code', { class: 'tip-arch-id' }, t.arch_id),
      h('dl', { class: 'kv' }, this.metricList(t)),
      h('pre', { class: 'arch' }, JSON.stringify(t.arch)),
    );
    tip.hidden = false;
    const wrap = $('plot-wrap').getBoundingClientRect();
    const c = circle.getBoundingClientRect();
    const left = c.right - wrap.left + 10;
    const flip = left + tip.offsetWidth > wrap.width;
    tip.style.left = `${Math.max(0, flip ? c.left - wrap.left - tip.offsetWidth - 10 : left)}px`;
    tip.style.top = `${Math.max(0, Math.min(c.top - wrap.top - 10, wrap.height - tip.offsetHeight))}px`;
  }

  // ---------------------------------------------------------------------- selection, export
  exportable() {
    return this.detail.spec?.evaluator?.kind === 'supernet';
  }

  select(number) {
    const t = this.byNumber.get(number);
    for (const el of document.querySelectorAll('#plot .pt.sel, #trials-table tr.selected')) {
      el.classList.remove('sel', 'selected');
    }
    if (!t) {
      this.selected = null;
      $('selected').hidden = true;
      $('selected-empty').hidden = false;
      return;
    }
    this.selected = number;
    $('plot').querySelector(`.pt[data-number="${number}"]`)?.classList.add('sel');
    $('trials-table').querySelector(`tr[data-number="${number}"]`)?.classList.add('selected');
    $('selected-empty').hidden = true;
    $('selected').hidden = false;
    $('sel-number').textContent = `Trial #${t.number}${this.front.has(number) ? ' ★' : ''}`;
    $('sel-arch-id').textContent = t.arch_id;
    $('sel-metrics').replaceChildren(...this.metricList(t));
    $('sel-arch').textContent = JSON.stringify(t.arch, null, 0);
    const ok = this.exportable();
    $('export-box').hidden = !ok;
    $('export-none').hidden = ok;
    const kind = this.detail.spec?.evaluator?.kind;
    $('export-none').textContent = ok ? '' : `Exports need a supernet search (this job's evaluator: ${kind}).`;
  }

  async exportSelected() {
    const status = $('export-status');
    const trial = this.selected;
    const formats = [...document.querySelectorAll('input[name="format"]:checked')].map((i) => i.value).join(',');
    if (!formats) {
      showError(new Error('Choose at least one export format (torch, onnx, torchscript).'));
      return;
    }
    $('export').disabled = true;
    status.dataset.state = 'busy';
    status.textContent = `Exporting trial #${trial} (${formats})…`;
    try {
      const got = await exportTrial(this.id, trial, { formats, int8: $('int8').checked });
      status.dataset.state = 'done';
      status.textContent = `Downloaded ${got.name} (${fmt(got.size / 1024)} KiB).`;
    } catch (err) {
      status.dataset.state = 'error';
      status.textContent = `Export of trial #${trial} failed.`;
      showError(err);
    } finally {
      $('export').disabled = false;
    }
  }
}

export function jobPage(id) {
  return new JobPage(id).start();
}
