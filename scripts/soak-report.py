#!/usr/bin/env python3
"""The soak's report: requests, errors, p99 latency and memory at minutes
1, 10, 20 and 30 (or the last), from the samples scripts/soak.sh took, and
the verdict: no errors, and memory flat after warm-up (the least-squares
slope of each process's RSS from minute 5 on, in MB per 10 minutes, under
the limit).

    soak-report.py SAMPLES K6_SUMMARY_JSON K6_EXIT_CODE
"""
import json
import re
import sys

SLOPE_LIMIT_MB_PER_10MIN = 2.0
WARM_UP_MIN = 5

LINE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def parse(path):
    minutes = []
    for raw in open(path):
        raw = raw.strip()
        if raw.startswith('# minute'):
            parts = raw.split()
            minutes.append({
                'minute': int(parts[2]),
                'server_rss_mb': int(parts[4]) / 1024,
                'worker_rss_mb': int(parts[6]) / 1024,
                'requests': 0.0,
                'errors': 0.0,
                'buckets': {},
            })
            continue
        m = LINE.match(raw)
        if not m or not minutes:
            continue
        name, labels, value = m.group(1), m.group(2), float(m.group(3))
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        sample = minutes[-1]
        if name == 'orgstack_http_requests_total':
            sample['requests'] += value
            if labels.get('status', '').startswith('5'):
                sample['errors'] += value
        elif name == 'orgstack_http_request_duration_seconds_bucket':
            le = float('inf') if labels['le'] == '+Inf' else float(labels['le'])
            sample['buckets'][le] = sample['buckets'].get(le, 0.0) + value
    return minutes


def p99(before, after):
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    for le, count in deltas:
        if count >= 0.99 * total:
            return le
    return None


def slope(points):
    n = len(points)
    if n < 3:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in points) / var


def main():
    samples, summary, k6_exit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    minutes = parse(samples)
    if not minutes:
        print('no samples: the soak ran less than a minute')
        return 1
    k6 = json.load(open(summary))
    failed = k6['metrics'].get('http_req_failed', {}).get('passes', 0)
    reqs = k6['metrics'].get('http_reqs', {}).get('count', 0)
    last = minutes[-1]['minute']
    wanted = [m for m in (1, 10, 20, 30) if m <= last] or [last]
    if last not in wanted:
        wanted.append(last)
    print('| minute | requests in the minute | 5xx | p99 (bucket bound) | server RSS | worker RSS |')
    print('| --- | --- | --- | --- | --- | --- |')
    by_minute = {m['minute']: m for m in minutes}
    for minute in wanted:
        now = by_minute[minute]
        before = by_minute.get(minute - 1, {'requests': 0.0, 'errors': 0.0, 'buckets': {}})
        bound = p99(before['buckets'], now['buckets'])
        shown = '-' if bound is None else ('> 10 s' if bound == float('inf') else f'≤ {bound * 1000:g} ms')
        print(f"| {minute} | {now['requests'] - before['requests']:.0f} | {now['errors'] - before['errors']:.0f} "
              f"| {shown} | {now['server_rss_mb']:.1f} MB | {now['worker_rss_mb']:.1f} MB |")
    verdict = []
    for who in ('server', 'worker'):
        points = [(m['minute'], m[f'{who}_rss_mb']) for m in minutes if m['minute'] >= WARM_UP_MIN]
        per_10 = slope(points) * 10
        ok = per_10 < SLOPE_LIMIT_MB_PER_10MIN
        verdict.append(ok)
        print(f"\n{who} RSS trend after minute {WARM_UP_MIN}: {per_10:+.2f} MB per 10 min "
              f"({'flat' if ok else 'GROWING'}; limit {SLOPE_LIMIT_MB_PER_10MIN} MB)")
    errors = minutes[-1]["errors"]
    print(f"\nk6: {reqs} requests, {failed} failed; thresholds {'passed' if k6_exit == 0 else 'FAILED'}; "
          f"server 5xx over the run: {errors:.0f}")
    return 0 if all(verdict) and failed == 0 and errors == 0 and k6_exit == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
