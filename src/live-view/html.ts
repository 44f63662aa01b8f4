/**
 * The live view's page: static HTML with inline CSS, reloaded by `<meta http-equiv="refresh">`.
 * Every value that comes from a pool (names, paths, stacks, server) goes through `escapeHtml`:
 * pool names and stacks are application data, and a pool name is free text.
 */
import { formatCodeLocation } from '../code-location';
import type { LiveViewHold, LiveViewPool, LiveViewSnapshot } from './index';

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:0}
.meta{color:#666;margin:0 0 1.2em}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:0 0 1.2em}
.server{color:#666;font-family:ui-monospace,monospace;margin:.2em 0 .6em}
.counts{display:flex;flex-wrap:wrap;gap:.4em 1.4em;margin:.4em 0 .8em}
.counts span b{font-size:1.15em}.warn b{color:#b00020}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .6em;border-top:1px solid #eee;vertical-align:top}
th{font-weight:600;color:#444;border-top:none;white-space:nowrap}
td.time{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.suspected td{background:#fff1f0}
.tag{background:#b00020;color:#fff;border-radius:3px;padding:0 .35em;font-size:.8em;margin-left:.4em}
code,pre{font-family:ui-monospace,monospace;font-size:12px}
pre{margin:.3em 0 0;white-space:pre-wrap;color:#333}
.none{color:#666;font-style:italic}
`;

export function renderHtml(snapshot: LiveViewSnapshot, refreshSeconds: number): string {
  const refresh =
    refreshSeconds > 0 ? `<meta http-equiv="refresh" content="${refreshSeconds}">` : '';
  const pools = snapshot.pools.map(renderPool).join('\n');
  const held = snapshot.pools.reduce((n, p) => n + (p.holds?.length ?? 0) + p.holdsNotListed, 0);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
${refresh}
<title>poolwatch: held connections</title>
<style>${STYLE}</style>
</head>
<body>
<h1>poolwatch: held connections</h1>
<p class="meta">${snapshot.pools.length} open pool(s), ${held} lease(s) held · ${escapeHtml(snapshot.generatedAt)}${
    refreshSeconds > 0 ? ` · reloads every ${refreshSeconds} s` : ''
  } · <a href="?format=json">JSON</a></p>
${pools || '<p class="none">No open pools in this process.</p>'}
</body>
</html>
`;
}

function renderPool(pool: LiveViewPool): string {
  const s = pool.stats;
  const server = pool.server;
  const where = server
    ? [
        server.system,
        (server.address ?? '') +
          (server.port !== undefined ? `:${server.port}` : '') +
          (server.namespace !== undefined ? `/${server.namespace}` : ''),
      ]
        .filter((part) => part !== undefined && part !== '')
        .join(' ')
    : '';
  const count = (label: string, value: number | string, warn = false) =>
    `<span${warn ? ' class="warn"' : ''}>${label} <b>${escapeHtml(value)}</b></span>`;
  const oldest =
    pool.oldestHoldSeconds === null ? 'unknown' : `${pool.oldestHoldSeconds.toFixed(1)} s`;
  const counts = [
    count('used', `${s.used}/${s.max}`),
    count('idle', s.idle),
    count('waiting', s.pending, s.pending > 0),
    count('oldest hold', oldest),
    count('suspected leaks', s.suspectedLeaks, s.suspectedLeaks > 0),
    count('collected', s.collectedLeaks, s.collectedLeaks > 0),
    count('reclaimed', s.reclaimedLeaks, s.reclaimedLeaks > 0),
    count('timeouts', s.timeouts, s.timeouts > 0),
  ].join('');
  let holds: string;
  if (pool.holds === null) {
    holds = '<p class="none">This pool does not list its holds.</p>';
  } else if (pool.holds.length === 0) {
    holds = '<p class="none">No leases held.</p>';
  } else {
    holds = `<table class="holds">
<thead><tr><th>lease</th><th>held for</th><th>acquired at</th><th>code location</th><th>stack</th></tr></thead>
<tbody>
${pool.holds.map(renderHold).join('\n')}
</tbody>
</table>${
      pool.holdsNotListed > 0
        ? `<p class="none">and ${pool.holdsNotListed} more lease(s), not listed.</p>`
        : ''
    }`;
  }
  return `<section class="pool">
<h2>${escapeHtml(pool.name)}</h2>
${where ? `<p class="server">${escapeHtml(where)}</p>` : ''}
<div class="counts">${counts}</div>
${holds}
</section>`;
}

function renderHold(hold: LiveViewHold): string {
  const stack =
    hold.stack === null
      ? '<span class="none">not captured</span>'
      : `<details><summary>${hold.stack.split('\n').length} frame(s)</summary><pre>${escapeHtml(hold.stack)}</pre></details>`;
  return `<tr${hold.suspected ? ' class="suspected"' : ''}>
<td class="num">#${hold.leaseId}${hold.suspected ? '<span class="tag">suspected leak</span>' : ''}</td>
<td class="num">${hold.ageSeconds.toFixed(1)} s</td>
<td class="time">${escapeHtml(hold.acquiredAt)}</td>
<td><code>${escapeHtml(formatCodeLocation(hold.location ?? undefined))}</code></td>
<td>${stack}</td>
</tr>`;
}
