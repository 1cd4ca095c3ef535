// Jobs API mix over several orgs: one sign-in in setup (its token shared
// by every virtual user, as a frontend's users would each hold one), then
// each virtual user repeatedly enqueues a no-op job in one org and lists the newest 50 jobs
// of another (the orgs taken round-robin). Needs a worker running (as
// `orgstack dev` has) so the queue drains.
//
//   k6 run k6/jobs.js        (against `orgstack dev`: its admin, and orgs k6-1..k6-4 it creates)
//   BASE_URL=http://127.0.0.1:8080 EMAIL=admin@example.com PASSWORD=... ORGS=4 RATE=400 DURATION=30s k6 run k6/jobs.js
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const EMAIL = __ENV.EMAIL || 'admin@example.com';
const PASSWORD = __ENV.PASSWORD || 'orgstack-dev-password';
const ORGS = Number(__ENV.ORGS || 4);

// A steady arrival rate (not as-fast-as-possible virtual users): latency
// thresholds mean something only below saturation, and k6 shares the
// machine with the server, PostgreSQL and Redis. Each iteration is two
// requests, so RATE=400 is 800 requests/s.
export const options = {
  scenarios: {
    jobs: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 400),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 128),
      maxVUs: Number(__ENV.MAX_VUS || 256),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{name:enqueue}': ['p(95)<25', 'p(99)<50'],
    'http_req_duration{name:list}': ['p(95)<25', 'p(99)<50'],
    checks: ['rate>0.999'],
    dropped_iterations: ['count==0'],
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
    const res = http.post(`${BASE_URL}/api/v1/orgs`, JSON.stringify({ name: `k6 ${i}`, slug }), {
      headers,
      tags: { name: 'setup' },
      responseCallback: http.expectedStatuses(201, 409),
    });
    if (res.status !== 201 && res.status !== 409) fail(`creating ${slug}: ${res.status} ${res.body}`);
    slugs.push(slug);
  }
  return { slugs, token };
}

let n = 0;

export default function (data) {
  n += 1;
  const headers = { Authorization: `Bearer ${data.token}`, 'Content-Type': 'application/json' };
  const into = data.slugs[(__VU + n) % data.slugs.length];
  const from = data.slugs[(__VU + n + 1) % data.slugs.length];
  const posted = http.post(`${BASE_URL}/api/v1/orgs/${into}/jobs`, JSON.stringify({ kind: 'noop' }), { headers, tags: { name: 'enqueue' } });
  check(posted, { 'enqueue is 201': (r) => r.status === 201 });
  const listed = http.get(`${BASE_URL}/api/v1/orgs/${from}/jobs?limit=50`, { headers, tags: { name: 'list' } });
  // A cheap check: parsing each 50-row body in k6's JavaScript would cost more
  // CPU than the server spends producing it.
  check(listed, { 'list is 200': (r) => r.status === 200 && r.body.startsWith('{"items":[') });
}
