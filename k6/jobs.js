// Jobs API mix over several orgs: each virtual user signs in once, then
// repeatedly enqueues a no-op job in one org and lists the newest 50 jobs
// of another (the orgs taken round-robin). Needs a worker running (as
// `orgstack dev` has) so the queue drains.
//
//   k6 run k6/jobs.js        (against `orgstack dev`: its admin, and orgs k6-1..k6-4 it creates)
//   BASE_URL=http://127.0.0.1:8080 EMAIL=admin@example.com PASSWORD=... ORGS=4 VUS=32 k6 run k6/jobs.js
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const EMAIL = __ENV.EMAIL || 'admin@example.com';
const PASSWORD = __ENV.PASSWORD || 'orgstack-dev-password';
const ORGS = Number(__ENV.ORGS || 4);

export const options = {
  vus: Number(__ENV.VUS || 32),
  duration: __ENV.DURATION || '20s',
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{name:enqueue}': ['p(95)<25', 'p(99)<50'],
    'http_req_duration{name:list}': ['p(95)<25', 'p(99)<50'],
    checks: ['rate>0.999'],
  },
};

function login() {
  const res = http.post(`${BASE_URL}/api/v1/auth/login`, JSON.stringify({ email: EMAIL, password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'login' },
  });
  if (res.status !== 200) fail(`login failed: ${res.status} ${res.body}`);
  return res.json('token');
}

// Creates the orgs k6-1..k6-N once (a platform admin may create orgs; an
// org that exists already is reused).
export function setup() {
  const token = login();
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const slugs = [];
  for (let i = 1; i <= ORGS; i++) {
    const slug = `k6-${i}`;
    const res = http.post(`${BASE_URL}/api/v1/orgs`, JSON.stringify({ name: `k6 ${i}`, slug }), { headers, tags: { name: 'setup' } });
    if (res.status !== 201 && res.status !== 409) fail(`creating ${slug}: ${res.status} ${res.body}`);
    slugs.push(slug);
  }
  return { slugs };
}

let token = null;
let n = 0;

export default function (data) {
  if (token === null) token = login();
  n += 1;
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const into = data.slugs[(__VU + n) % data.slugs.length];
  const from = data.slugs[(__VU + n + 1) % data.slugs.length];
  const posted = http.post(`${BASE_URL}/api/v1/orgs/${into}/jobs`, JSON.stringify({ kind: 'noop' }), { headers, tags: { name: 'enqueue' } });
  check(posted, { 'enqueue is 201': (r) => r.status === 201 });
  const listed = http.get(`${BASE_URL}/api/v1/orgs/${from}/jobs?limit=50`, { headers, tags: { name: 'list' } });
  check(listed, { 'list is 200': (r) => r.status === 200 && Array.isArray(r.json('items')) });
}
