// Authenticated API mix: each virtual user signs in once, then reads
// GET /api/v1/me, GET /api/v1/orgs/{org} and GET /api/v1/orgs/{org}/flags.
//
//   k6 run k6/api.js        (against `orgstack dev`: its admin and demo org)
//   BASE_URL=http://127.0.0.1:8080 EMAIL=admin@example.com PASSWORD=... ORG=demo VUS=32 k6 run k6/api.js
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const EMAIL = __ENV.EMAIL || 'admin@example.com';
const PASSWORD = __ENV.PASSWORD || 'orgstack-dev-password';
const ORG = __ENV.ORG || 'demo';

export const options = {
  vus: Number(__ENV.VUS || 32),
  duration: __ENV.DURATION || '20s',
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{name:me}': ['p(95)<25'],
    'http_req_duration{name:org}': ['p(95)<25'],
    'http_req_duration{name:flags}': ['p(95)<25'],
  },
};

let token = null;

function login() {
  const res = http.post(`${BASE_URL}/api/v1/auth/login`, JSON.stringify({ email: EMAIL, password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'login' },
  });
  if (res.status !== 200) fail(`login failed: ${res.status} ${res.body}`);
  return res.json('token');
}

export default function () {
  if (token === null) token = login();
  const params = (name) => ({ headers: { Authorization: `Bearer ${token}` }, tags: { name } });
  const me = http.get(`${BASE_URL}/api/v1/me`, params('me'));
  check(me, { 'me is 200': (r) => r.status === 200 });
  const org = http.get(`${BASE_URL}/api/v1/orgs/${ORG}`, params('org'));
  check(org, { 'org is 200': (r) => r.status === 200 });
  const flags = http.get(`${BASE_URL}/api/v1/orgs/${ORG}/flags`, params('flags'));
  check(flags, { 'flags is 200': (r) => r.status === 200 });
}
