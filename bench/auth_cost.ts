/**
 * In-process cost of answering one request, for `deno task bench --auth`:
 * the server core's `respond`, the stamp, and for a request with a MAC the
 * reply's MAC (the worker's `seal`), timed over a warm loop, with each
 * digest backend (lib/auth/digest.ts: node:crypto and noble; libcrypto
 * through FFI, lib/io/openssl_mac.ts). No sockets: what authentication
 * adds to the CPU time of a reply, free of the load generator and the
 * machine's other jobs.
 */
import { serverContext } from "../tests/helpers/fixtures.ts";
import { REPLY_LENGTH, REPLY_SEAL, respond, stampTransmit } from "../lib/ntp/server.ts";
import { Leap } from "../lib/ntp/packet.ts";
import { unsyncedState } from "../lib/ntp/system_state.ts";
import { newClientAddress, setClientAddress } from "../lib/ntp/address.ts";
import { checkMac, writeMac } from "../lib/auth/mac.ts";
import { libraryDigest, setDigestBackend } from "../lib/auth/digest.ts";
import { openSslDigest } from "../lib/io/openssl_mac.ts";
import type { SymmetricKey } from "../lib/auth/keys.ts";

/** ns per reply for each key (null: a plain request), with the library and libcrypto backends. */
export function replyCostNs(
  keys: SymmetricKey[],
  rounds = 200_000,
): { mode: string; library_ns: number; libcrypto_ns: number | null }[] {
  const table = new Map(keys.map((k) => [k.id, k]));
  const trusted = new Set(table.keys());
  const ctx = serverContext({ ...unsyncedState(-20), leap: Leap.none, stratum: 2 });
  ctx.auth = { check: (r, l, v) => checkMac(table, trusted, r, l, v) };
  const client = newClientAddress();
  setClientAddress(client, new Uint8Array([127, 0, 0, 1]), 0, 4, 40000);
  const out = new Uint8Array(2048);
  const time = (key: SymmetricKey | null): number => {
    const req = new Uint8Array(128);
    req[0] = (4 << 3) | 3;
    const n = key ? writeMac(key, req, 0, 48) : 48;
    const once = (i: number) => {
      req[47] = i & 0xff; // a new request each time (the MAC is not checked against it)
      const r = respond(req, n, client, 1_800_000_000, i, ctx, out, 0);
      stampTransmit(out, 0, ctx.system, 1_800_000_000, i + 1000);
      if (key && (r & REPLY_SEAL) !== 0) writeMac(key, out, 0, 48, (r & REPLY_LENGTH) - 52);
    };
    for (let i = 0; i < rounds / 4; i++) once(i);
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) once(i);
    return (performance.now() - t0) * 1e6 / rounds;
  };
  const modes: (SymmetricKey | null)[] = [null, ...keys];
  setDigestBackend(libraryDigest);
  const library = modes.map(time);
  const ffi = openSslDigest();
  const libcrypto = typeof ffi === "string" ? null : (setDigestBackend(ffi), modes.map(time));
  setDigestBackend(libraryDigest);
  return modes.map((k, i) => ({
    mode: k ? k.type : "plain",
    library_ns: library[i]!,
    libcrypto_ns: libcrypto ? libcrypto[i]! : null,
  }));
}
