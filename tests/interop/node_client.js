// Node's `ws` as a WSA client: `node node_client.js run URL TIMES` prints the scenario's report;
// `node node_client.js shutdown URL` prints "ready" once logged in, then how the server closed.
"use strict";
const WebSocket = require("ws");
const { run, untilShutdown } = require("./scenario.js");

async function main() {
  const [mode, url, times] = process.argv.slice(2);
  let result;
  if (mode === "run") result = await run(WebSocket, url, Number(times));
  else result = await untilShutdown(WebSocket, url, () => process.stdout.write("ready\n"));
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
    process.exit(1);
  },
);
