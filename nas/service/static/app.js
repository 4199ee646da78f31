// Entry point: the token field, the auth mode, and the route (/ui/ or /ui/jobs/{id}).
import { api, token } from './api.js';
import { jobPage } from './job.js';
import { jobsPage } from './jobs.js';
import { $, clearError, showError } from './util.js';

function tokenForm() {
  $('token').value = token.get();
  $('token-form').onsubmit = (e) => {
    e.preventDefault();
    token.set($('token').value.trim());
    window.location.reload();
  };
  $('token-clear').onclick = () => {
    token.set('');
    window.location.reload();
  };
  $('error-close').onclick = clearError;
}

async function authMode() {
  try {
    const health = await api('/api/health');
    const local = health.auth === 'insecure-local';
    $('auth-mode').textContent = local ? 'insecure-local: no token needed' : token.get() ? '' : 'a token is required';
    if (local) $('token').placeholder = 'not needed';
  } catch (err) {
    showError(err);
  }
}

tokenForm();
authMode();
const m = /^\/ui\/jobs\/([^/]+)\/?$/.exec(window.location.pathname);
if (m) jobPage(decodeURIComponent(m[1]));
else jobsPage();
