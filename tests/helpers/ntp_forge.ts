/**
 * An attacker for the broadcast tests, run inside its own namespace
 * (`ip netns exec NS deno run --allow-net tests/helpers/ntp_forge.ts …`):
 * sends forged NTP packets that claim stratum 1 and a time 1000 s ahead.
 *
 *   ntp_forge.ts KIND HOST PORT COUNT [KEYID]
 *
 * KIND: `mode5` (broadcast without a MAC), `mode5-badmac` (a MAC of key
 * KEYID with a random digest), `mode1` (symmetric active, no MAC). HOST may
 * be a group or a broadcast address. Prints the number sent.
 */
import dgram from "node:dgram";
import { Leap, Mode, serializePacket } from "../../lib/ntp/packet.ts";
import { asciiRefid } from "../../lib/ntp/packet.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";

/** One forged packet of `kind`, sent at Unix time `now`, claiming to be `ahead` seconds ahead. */
export function forged(kind: string, now: number, keyId = 5, ahead = 1000): Uint8Array {
  const header = serializePacket({
    leap: Leap.none,
    version: 4,
    mode: kind === "mode1" ? Mode.symmetricActive : Mode.broadcast,
    stratum: 1,
    poll: 4,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: asciiRefid("GPS"),
    ref: fromUnixSeconds(now + ahead - 1),
    org: 0n,
    rec: 0n,
    xmt: fromUnixSeconds(now + ahead),
  });
  if (kind !== "mode5-badmac") return header;
  const out = new Uint8Array(48 + 4 + 20);
  out.set(header);
  new DataView(out.buffer).setUint32(48, keyId);
  crypto.getRandomValues(out.subarray(52));
  return out;
}

if (import.meta.main) {
  const [kind, host, port, count, keyId] = Deno.args;
  if (!kind || !host || !port || !count) {
    console.error("usage: ntp_forge.ts mode5|mode5-badmac|mode1 HOST PORT COUNT [KEYID]");
    Deno.exit(2);
  }
  const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((r) => s.bind(0, () => r()));
  s.setBroadcast(true);
  let sent = 0;
  for (let i = 0; i < Number(count); i++) {
    const p = forged(kind, Date.now() / 1000, Number(keyId ?? 5));
    await new Promise<void>((r) => s.send(p, Number(port), host, () => r()));
    sent++;
    await new Promise((r) => setTimeout(r, 50));
  }
  s.close();
  console.log(sent);
}
