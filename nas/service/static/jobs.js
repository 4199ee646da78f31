// The jobs list: status, kind, name, progress (live for pending and running jobs).
import { api, jobPath, query } from './api.js';
import { $, ACTIVE, badge, clearError, h, progress, showError, when } from './util.js';

const POLL_MS = 3000;
const DETAILS = 50; // progress is fetched for at most this many jobs (newest first)
const done = new Map(); // id -> detail of an ended job (it no longer changes)

async function detailOf(job) {
  if (done.has(job.id)) return done.get(job.id);
  const d = await api(jobPath(job.id));
  if (!ACTIVE.has(d.status)) done.set(job.id, d);
  return d;
}

function progressCell(cell, detail) {
  const p = progress(detail);
  const bar = h('span', { class: 'bar small' }, h('span'));
  bar.firstChild.style.width = `${Math.round(p.frac * 100)}%`;
  cell.replaceChildren(bar, h('span', { class: 'muted' }, p.text));
}

function row(job) {
  const status = h('span');
  badge(status, job.status);
  const prog = h('td', { class: 'prog' }, h('span', { class: 'muted' }, '…'));
  const tr = h('tr', { dataset: { id: job.id } },
    h('td', {}, h('a', { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, job.name),
      h('div', { class: 'muted id' }, job.id)),
    h('td', {}, job.kind), h('td', {}, status), prog, h('td', {}, job.owner), h('td', {}, when(job.created_at)));
  if (job.error) tr.title = job.error;
  return { tr, prog };
}

let timer = null;

async function load() {
  clearTimeout(timer);
  let jobs;
  try {
    jobs = await api(`/api/jobs${query({ status: $('status-filter').value })}`);
  } catch (err) {
    showError(err);
    return;
  }
  clearError();
  const rows = jobs.map(row);
  $('jobs-table').tBodies[0].replaceChildren(...rows.map((r) => r.tr));
  $('jobs-empty').hidden = jobs.length > 0;
  $('jobs-table').dataset.state = 'ready';
  await Promise.all(jobs.slice(0, DETAILS).map(async (job, i) => {
    try {
      progressCell(rows[i].prog, await detailOf(job));
    } catch (err) {
      rows[i].prog.replaceChildren(h('span', { class: 'muted' }, err.message));
    }
  }));
  if (jobs.some((j) => ACTIVE.has(j.status))) timer = setTimeout(load, POLL_MS);
}

export function jobsPage() {
  $('jobs-page').hidden = false;
  $('status-filter').onchange = load;
  $('jobs-refresh').onclick = load;
  return load();
}
