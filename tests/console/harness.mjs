// What the console suite runs against: the real hookmesh-dataplane binary on a manifests
// directory, a receiver that answers like a healthy and a broken service, and Debian's Chromium.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WRITE_KEY = 'console-write-key-0123456789';
export const READ_KEY = 'console-read-key-0123456789';
export const GITHUB_SECRET = 'console-github-secret';

/** The manifests: a source without verification (`orders`), a GitHub source in audit mode,
 * an endpoint that answers 200 (`shipping`), one that always answers 503 (`billing`, one
 * attempt), and a write key and a read key. */
function manifests(receiver) {
  return `
apiVersion: v1
kind: Secret
metadata: {name: signing, namespace: default}
stringData: {secret: "whsec_c2lnbmluZy1rZXktZm9yLWNvbnNvbGUtMDAwMDAw"}
---
apiVersion: v1
kind: Secret
metadata: {name: github-webhook, namespace: default}
stringData: {secret: "${GITHUB_SECRET}"}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: orders, namespace: default}
spec:
  verification: {scheme: none}
  eventType: {jsonPointer: /type}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {name: github, namespace: default}
spec:
  verification:
    scheme: github
    mode: audit
    secretRef: {name: github-webhook, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: shipping, namespace: default}
spec:
  url: ${receiver}/ok
  secretRef: {name: signing, key: secret}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {name: billing, namespace: default}
spec:
  url: ${receiver}/broken
  secretRef: {name: signing, key: secret}
  retry: {maxAttempts: 1}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: orders-to-shipping, namespace: default}
spec:
  endpointRef: {name: shipping}
  sources: [orders]
  filter:
    eventTypes: ["order.*"]
    headers:
      - {name: x-env, exact: prod}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {name: orders-to-billing, namespace: default}
spec:
  endpointRef: {name: billing}
  sources: [orders]
  filter: {eventTypes: ["order.paid"]}
---
apiVersion: v1
kind: Secret
metadata:
  name: console-write
  namespace: default
  labels: {hookmesh.io/api-key: "true"}
stringData: {key: ${WRITE_KEY}, role: write}
---
apiVersion: v1
kind: Secret
metadata:
  name: console-read
  namespace: default
  labels: {hookmesh.io/api-key: "true"}
stringData: {key: ${READ_KEY}, role: read}
`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A receiver: `/ok` answers 200, `/broken` answers 503 with a JSON reason. */
async function receiver() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ path: req.url, body });
      if (req.url === '/ok') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('received');
      } else {
        res.writeHead(503, { 'content-type': 'application/json' })
          .end('{"error":"database unavailable","retry":"later"}');
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

export async function waitFor(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** The gateway, its receiver and a browser; `stop()` ends all three. */
export async function start() {
  execFileSync('cargo', ['build', '-q', '-p', 'hookmesh-dataplane'], { cwd: ROOT, stdio: 'inherit' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hookmesh-console-'));
  const recv = await receiver();
  const manifestsDir = path.join(dir, 'manifests');
  execFileSync('mkdir', ['-p', manifestsDir]);
  writeFileSync(path.join(manifestsDir, 'console.yaml'), manifests(recv.url));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  let logs = '';
  const proc = spawn(path.join(target, 'debug', 'hookmesh-dataplane'), [
    '--manifests', manifestsDir, '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`,
    // The receiver listens on loopback, which the egress guard refuses by default.
    '--egress-allow=127.0.0.0/8',
  ], { env: { ...process.env, RUST_LOG: 'info' } });
  proc.stdout.on('data', (d) => { logs += d; });
  proc.stderr.on('data', (d) => { logs += d; });
  await waitFor('the gateway to be ready', async () => (await fetch(`${base}/readyz`)).status === 200, 60000);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  return {
    base,
    receiver: recv,
    browser,
    logs: () => logs,
    api: (method, p, body, key = WRITE_KEY) => fetch(`${base}${p}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
    async stop() {
      await browser.close();
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      recv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
