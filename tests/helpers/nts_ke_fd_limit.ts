/**
 * Runs an NTS-KE server for tests/integration/nts_ke_server_test.ts in a
 * process whose file descriptor limit the test sets low (`ulimit -n`):
 * prints the port, then every log line, and serves until killed. Cookies
 * are a stub; sessions time out after 500 ms.
 *
 *   deno run -A tests/helpers/nts_ke_fd_limit.ts CERT KEY
 */
import { startNtsKe } from "../../lib/io/nts_ke_listener.ts";

const [cert, key] = Deno.args as [string, string];
const say = (level: string) => (m: string) => console.log(`${level} ${m}`);
const ke = await startNtsKe({
  listen: ["127.0.0.1:0"],
  certificate: cert,
  privateKey: key,
  makeCookies: (_a, _c, _s, n) => Array.from({ length: n }, () => new Uint8Array(64)),
  supportedAeads: [15],
  sessionTimeoutMs: 500,
  log: { debug: say("debug"), info: say("info"), warning: say("warning"), error: say("error") },
});
console.log(`port ${ke.bound[0]!.split(":").pop()}`);
setInterval(() => console.log(`counters ${JSON.stringify(ke.counters())}`), 250);
