/**
 * No password in telemetry: a real pg pool under full instrumentation (hold and wait spans,
 * metrics, alert log records), driven through a suspected leak, a timeout and a failed connect,
 * then every exported span, log record and metric point is searched for the password.
 */
import assert from 'node:assert/strict';
import { AcquireTimeoutError, CreateFailedError } from '../../src';
import { createPgPool } from '../../src/drivers';
import { Telemetry } from '../instrumentation/telemetry';
import { getPostgres } from '../support/postgres';
import { assertNoSecret } from '../support/secrets';

describe('no credentials in telemetry', function () {
  this.timeout(60_000);

  it('spans, log records and metrics of a pg pool never carry the password', async () => {
    const server = await getPostgres();
    const telemetry = new Telemetry({ waitSpans: true });
    let password = server.config.password;
    const url = new URL(server.connectionString);
    if (password === '') {
      // Trust authentication: put one in the URL anyway; it is in every config the pool sees.
      password = `pwsecret-${Math.random().toString(36).slice(2)}`;
      url.password = password;
    }
    const pool = createPgPool(url.toString(), {
      name: undefined,
      max: 1,
      acquireTimeoutMillis: 200,
      leakDetectionThresholdMillis: 50,
      housekeepingIntervalMillis: 10,
      detectSelfDeadlock: false,
      health: { intervalMillis: 20, maxHoldMillis: 50 },
    });
    // A connection string with a wrong password in it, for a failed create.
    const badUrl = new URL(url);
    badUrl.username = 'no_such_role_poolwatch';
    const failing = createPgPool(badUrl.toString(), { max: 1, acquireTimeoutMillis: 5000 });
    try {
      await pool.use((client) => client.query('SELECT 1'));
      const held = await pool.acquire();
      await held.resource.query('SELECT 1');
      await assert.rejects(pool.acquire(), AcquireTimeoutError);
      await new Promise((resolve) => setTimeout(resolve, 100)); // suspected leak + hold-age alert
      held.release();
      await assert.rejects(failing.acquire(), CreateFailedError);

      const spans = telemetry.spans();
      const logs = telemetry.logs();
      const metrics = [...(await telemetry.metrics()).values()];
      assert.ok(spans.some((s) => s.name === 'poolwatch.hold'));
      assert.ok(logs.some((l) => l.eventName === 'poolwatch.leak.suspected'));
      assert.ok(metrics.some((m) => m.descriptor.name === 'db.client.connection.wait_time'));
      assert.ok(
        spans.some((s) => s.attributes['server.port'] === server.config.port),
        'the spans do say where the pool connects',
      );
      assertNoSecret(
        {
          spans: spans.map((s) => ({
            name: s.name,
            attributes: s.attributes,
            events: s.events,
            status: s.status,
          })),
          logs: logs.map((l) => ({
            body: l.body,
            attributes: l.attributes,
            eventName: l.eventName,
          })),
          metrics,
          names: [pool.name, failing.name],
        },
        password,
        'telemetry',
      );
    } finally {
      await Promise.all([pool.close(), failing.close()]);
      telemetry.instrumentation.disable();
    }
  });
});
