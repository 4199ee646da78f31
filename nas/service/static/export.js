// Export a trial: POST /api/jobs/{id}/exports, then download the bundle with the token
// (fetch -> Blob -> a click on an <a download>; a plain link could not send the header).
import { api, jobPath, request } from './api.js';
import { h } from './util.js';

function filename(disposition, fallback) {
  const m = /filename="?([^";]+)"?/i.exec(disposition || '');
  return m ? m[1] : fallback;
}

/** Export trial `trial` of job `jobId`; resolves to {name, size} of the downloaded zip. */
export async function exportTrial(jobId, trial, { formats, int8 }) {
  const made = await api(`${jobPath(jobId)}/exports`, { method: 'POST', json: { trial, formats, int8 } });
  const r = await request(made.download);
  const blob = await r.blob();
  const name = filename(r.headers.get('Content-Disposition'), `${jobId}-${made.id}.zip`);
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return { name, size: blob.size };
}
