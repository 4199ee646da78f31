// The REST API client: the token lives in localStorage; errors carry the API's {"detail"}.

const KEY = 'hwnas.token';

export const token = {
  get: () => localStorage.getItem(KEY) || '',
  set: (t) => (t ? localStorage.setItem(KEY, t) : localStorage.removeItem(KEY)),
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function detailOf(r) {
  try {
    const body = await r.json();
    if (body && typeof body.detail === 'string') return body.detail;
    return JSON.stringify(body && 'detail' in body ? body.detail : body);
  } catch {
    return `${r.status} ${r.statusText || 'error'} from ${r.url}`;
  }
}

/** fetch(path) with the bearer token; a non-2xx answer throws ApiError(status, detail). */
export async function request(path, { method = 'GET', json } = {}) {
  const headers = { Accept: 'application/json' };
  const tok = token.get();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the server (${e.message}).`);
  }
  if (!r.ok) throw new ApiError(r.status, await detailOf(r));
  return r;
}

export async function api(path, opts) {
  return (await request(path, opts)).json();
}

/** '?a=1&b=x' from the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const jobPath = (id) => `/api/jobs/${encodeURIComponent(id)}`;
