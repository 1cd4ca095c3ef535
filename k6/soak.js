// Soak: a steady mix for a long time (30 minutes by default), to show that
// memory stays flat and nothing fails. Each iteration reads the signed-in
// user, an org and its flags, enqueues a `noop` job and lists the newest
// jobs, in one of a few orgs round-robin.
//
//   k6 run k6/soak.js              (against `orgstack dev`; scripts/soak.sh runs it all)
//   RATE=100 DURATION=30m ORGS=8 k6 run k6/soak.js
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const EMAIL = __ENV.EMAIL || 'admin@example.com';
const PASSWORD = __ENV.PASSWORD || 'orgstack-dev-password';
const ORGS = Number(__ENV.ORGS || 8);

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30m',
      preAllocatedVUs: Number(__ENV.VUS || 32),
      maxVUs: Number(__ENV.MAX_VUS || 128),
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    dropped_iterations: ['count==0'],
    http_req_duration: ['p(99)<100'],
  },
};

function json(body) {
  return { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${body}` } };
}

export function setup() {
  const login = http.post(`${BASE_URL}/api/v1/auth/login`, JSON.stringify({ email: EMAIL, password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json' },
  });
  if (login.status !== 200) fail(`sign-in failed: ${login.status} ${login.body}`);
  const token = login.json('token');
  const params = json(token);
  for (let i = 1; i <= ORGS; i++) {
    const slug = `soak-${i}`;
    // 404 is an answer here (the org is made next), not a failed request.
    const lookup = Object.assign({ responseCallback: http.expectedStatuses(200, 404) }, params);
    const found = http.get(`${BASE_URL}/api/v1/orgs/${slug}`, lookup);
    if (found.status === 404) {
      const made = http.post(`${BASE_URL}/api/v1/orgs`, JSON.stringify({ name: `Soak ${i}`, slug }), params);
      if (made.status !== 201) fail(`creating ${slug}: ${made.status} ${made.body}`);
    }
  }
  return { token };
}

export default function (data) {
  const params = json(data.token);
  const org = `soak-${(__ITER % ORGS) + 1}`;
  const base = `${BASE_URL}/api/v1/orgs/${org}`;
  const responses = http.batch([
    ['GET', `${BASE_URL}/api/v1/me`, null, Object.assign({ tags: { name: 'me' } }, params)],
    ['GET', base, null, Object.assign({ tags: { name: 'org' } }, params)],
    ['GET', `${base}/flags`, null, Object.assign({ tags: { name: 'flags' } }, params)],
    ['POST', `${base}/jobs`, '{"kind":"noop"}', Object.assign({ tags: { name: 'enqueue' } }, params)],
    ['GET', `${base}/jobs?limit=20`, null, Object.assign({ tags: { name: 'list' } }, params)],
  ]);
  check(responses, {
    'reads 200': (r) => r[0].status === 200 && r[1].status === 200 && r[2].status === 200 && r[4].status === 200,
    'enqueue 201': (r) => r[3].status === 201,
  });
}
