// Smoke test: GET /healthz and /readyz against a running Orgstack.
//   k6 run k6/healthz.js                       (BASE_URL defaults to orgstack dev's)
//   BASE_URL=http://127.0.0.1:8080 k6 run k6/healthz.js
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';

export const options = {
  vus: 10,
  duration: '10s',
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:healthz}': ['p(95)<10'],
    'http_req_duration{name:readyz}': ['p(95)<50'],
  },
};

export default function () {
  const health = http.get(`${BASE_URL}/healthz`, { tags: { name: 'healthz' } });
  check(health, {
    'healthz is 200': (r) => r.status === 200,
    'healthz says ok': (r) => r.json('status') === 'ok',
  });
  const ready = http.get(`${BASE_URL}/readyz`, { tags: { name: 'readyz' } });
  check(ready, { 'readyz is 200': (r) => r.status === 200 });
}
