/**
 * Mocha root hook plugin, loaded once per mocha process via `require` in
 * .mocharc.json.
 *
 * The shared embedded PostgreSQL server (see ./postgres.ts) is a child
 * process with open pipes: if nobody stops it, mocha never exits (it waits
 * for the event loop to drain) and the temp data directory is left behind.
 * A root `afterAll` runs once after every test file, which is exactly the
 * lifetime of the shared server.
 */
import { markStopHookInstalled, stopPostgres } from './postgres';

markStopHookInstalled();

export const mochaHooks: Mocha.RootHookObject = {
  async afterAll() {
    await stopPostgres();
  },
};
