import assert from "assert";
import { formatPeers } from "../../lib/status/text.ts";
import type { SourceReport } from "../../lib/engine/report.ts";

const row = (address: string, nts?: SourceReport["nts"]): SourceReport => ({
  tally: "*",
  address,
  kind: "server",
  refid: "LOCL",
  stratum: 3,
  when_s: 1,
  poll: 6,
  reach: 0o377,
  delay_s: 0.0001,
  offset_s: 0,
  jitter_s: 0,
  ...(nts ? { nts } : {}),
});

Deno.test("edge-time peers: NTS sources say NTS ok once keys, cookies and a verified reply are there", () => {
  const nts = {
    state: "ready" as const,
    cookies: 8,
    key_exchanges: 1,
    authenticated: 5,
    naks: 0,
    rejected: 0,
    ntp_server: "192.0.2.1:123",
    ke_server: "ntp.example:4460",
    error: "",
  };
  const out = formatPeers([
    row("192.0.2.1:123", nts),
    row("192.0.2.2:123", { ...nts, state: "failed", authenticated: 0 }),
    row("192.0.2.3:123"),
  ]);
  const lines = out.trimEnd().split("\n");
  assert.match(lines[0]!, / auth$/);
  assert.match(lines[2]!, /^\*192\.0\.2\.1:123 .* NTS ok$/);
  assert.match(lines[3]!, / NTS no$/);
  assert.match(lines[4]!, / {4}-$/);
  assert.doesNotMatch(formatPeers([row("192.0.2.3:123")]), /auth/);
});
