/**
 * Per-packet cost of NTS on the serving path, in process, for both
 * AES-SIV implementations (@noble/ciphers in TypeScript; OpenSSL's
 * libcrypto through FFI, lib/io/openssl_siv.ts): the AEAD operations
 * alone, and the whole server step of one NTS request (respond: open the
 * cookie, verify the authenticator, make a cookie; then seal the reply),
 * against a plain request through the same `respond`.
 *
 *   deno run --allow-all bench/nts_aead.ts [--rounds N]
 */
import { parseArgs } from "cli";
import { opensslSiv } from "../lib/io/openssl_siv.ts";
import { aeadFor, nobleAesSiv, useSivImplementation } from "../lib/nts/aead.ts";
import { CookieKeyring } from "../lib/nts/cookie.ts";
import { NtsServer } from "../lib/nts/server.ts";
import { NtsSession } from "../lib/nts/client.ts";
import { REPLY_LENGTH, REPLY_SEAL, respond, stampTransmit } from "../lib/ntp/server.ts";
import { Leap } from "../lib/ntp/packet.ts";
import { unsyncedState } from "../lib/ntp/system_state.ts";
import { newClientAddress, parseIp, setClientAddress } from "../lib/ntp/address.ts";
import { serverContext } from "../tests/helpers/fixtures.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "20000" } } });
const rounds = Number(values.rounds);

/** Mean µs per call of `f` over `rounds` calls, after a warm-up. */
function time(f: (i: number) => void): number {
  for (let i = 0; i < Math.min(2000, rounds); i++) f(i);
  const t = performance.now();
  for (let i = 0; i < rounds; i++) f(i);
  return (performance.now() - t) * 1000 / rounds;
}

const ring = new CookieKeyring([new Uint8Array(32).fill(1)], 2);
const k32 = new Uint8Array(32).fill(2);
const ctx = serverContext(
  { ...unsyncedState(-20), leap: Leap.none, stratum: 2, refTime: 1.8e9 },
  { nts: new NtsServer(ring) },
);
const client = newClientAddress();
setClientAddress(client, parseIp("192.0.2.1")!, 0, 4, 40000);
const cookies = ring.makeCookies(15, k32, k32, 8 * 64);
const requests: Uint8Array[] = [];
for (let i = 0; i < 64; i++) {
  const s = new NtsSession({
    aeadId: 15,
    c2s: k32,
    s2c: k32,
    cookies: cookies.slice(i * 8, i * 8 + 8),
  });
  const h = new Uint8Array(48);
  h[0] = 0x23;
  h[47] = i;
  const r = s.request(h)!;
  s.seal(r);
  requests.push(r);
}
const plain = new Uint8Array(48);
plain[0] = 0x23;
const out = new Uint8Array(2048);
const serve = (req: Uint8Array) => {
  const r = respond(req, req.length, client, 1.8e9, 0, ctx, out, 0);
  stampTransmit(out, 0, ctx.system, 1.8e9, 1000);
  if (r & REPLY_SEAL) ctx.nts!.seal(out, 0, r & REPLY_LENGTH);
};

const o = opensslSiv(nobleAesSiv);
if (typeof o === "string") throw new Error(o);
const siv = aeadFor(15)!;
const key = new Uint8Array(32), nonce = new Uint8Array(16);
const ad84 = new Uint8Array(84), pt108 = new Uint8Array(108), ad184 = new Uint8Array(184);
const rows: string[] = [];
const plainUs = time(() => serve(plain));
for (const [name, impl] of [["@noble/ciphers", null], ["OpenSSL (FFI)", o]] as const) {
  useSivImplementation(impl);
  const ctEmpty = siv.seal(key, nonce, new Uint8Array(0), ad184);
  const cookie = cookies[0]!;
  rows.push(
    `| ${name} | ${time(() => siv.seal(key, nonce, pt108, ad84)).toFixed(1)} | ${
      time(() => ring.openCookie(cookie)).toFixed(1)
    } | ${time(() => siv.open(key, nonce, ctEmpty, ad184)).toFixed(1)} | ${
      time((i) => serve(requests[i % 64]!)).toFixed(1)
    } | ${plainUs.toFixed(2)} |`,
  );
}
useSivImplementation(null);
console.log(
  `${new Date().toISOString()}  ${navigator.hardwareConcurrency} cores  rounds ${rounds}`,
);
console.log(
  "| AES-SIV from | seal 108 B (µs) | open a cookie (µs) | verify a request (µs) | NTS request, whole (µs) | plain request (µs) |",
);
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of rows) console.log(r);
