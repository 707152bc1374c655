"use strict";
// The official Node client (@eventstore/db-client) against one server: an append of one event,
// an append of two, an append at a stale revision, and a read back. Prints one JSON line of what
// it saw. Usage: node client_check.js CONNECTION_STRING STREAM
const { EventStoreDBClient, jsonEvent, NO_STREAM } = require("@eventstore/db-client");

const tested = (n) => jsonEvent({ type: "Tested", data: { n } });

async function check(connectionString, stream) {
  const client = EventStoreDBClient.connectionString(connectionString);
  try {
    const one = await client.appendToStream(stream, tested(0), { expectedRevision: NO_STREAM });
    const two = await client.appendToStream(stream, [tested(1), tested(2)], {
      expectedRevision: one.nextExpectedRevision,
    });
    let stale = null;
    try {
      await client.appendToStream(stream, tested(3), { expectedRevision: 0n });
    } catch (error) {
      stale = { type: error.type, actualVersion: String(error.actualVersion) };
    }
    const read = [];
    for await (const resolved of client.readStream(stream)) {
      const { revision, type, data, position } = resolved.event;
      read.push({ revision: Number(revision), type, data, commit: String(position.commit) });
    }
    return {
      appended: [one, two].map((result) => ({
        nextExpectedRevision: Number(result.nextExpectedRevision),
        commit: String(result.position.commit),
      })),
      stale,
      read,
    };
  } finally {
    await client.dispose();
  }
}

check(...process.argv.slice(2)).then(
  (seen) => process.stdout.write(`${JSON.stringify(seen)}\n`),
  (error) => {
    process.stderr.write(`${error.stack}\n`);
    process.exit(1);
  },
);
