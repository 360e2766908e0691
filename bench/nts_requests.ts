/**
 * NTS requests for `deno task bench --nts`: a master key file and a file of
 * prepared NTS client requests for ntpload's `--template` (records of a
 * 2-byte big-endian length and the packet). Each request is what an NTS
 * client with a full cookie jar sends (RFC 8915 §5.7): header, Unique
 * Identifier, one cookie (made with the master secret, as the server's
 * NTS-KE would), no placeholder, and an authenticator over it all with
 * the C2S key. Record i's transmit timestamp has i as its low 20 bits:
 * ntpload matches replies by it.
 */
import { CookieKeyring } from "../lib/nts/cookie.ts";
import { NtsSession } from "../lib/nts/client.ts";
import { AEAD_AES_SIV_CMAC_256 } from "../lib/nts/aead.ts";

/** ntpload's SLOT_BITS: the low bits of a request's id index its table. */
const SLOT_BITS = 20;

/**
 * Writes `dir/master.key` (a random secret) and `dir/nts-requests.bin`
 * (`count` requests, at most 2^20); returns both paths and the request length.
 */
export async function writeNtsRequests(
  dir: string,
  count = 8192,
): Promise<{ masterKeyFile: string; templateFile: string; requestLength: number }> {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const masterKeyFile = `${dir}/master.key`;
  const hex = [...secret].map((b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.writeTextFile(masterKeyFile, `${hex}\n`, { mode: 0o600 });
  const ring = new CookieKeyring([secret], 2);
  const c2s = crypto.getRandomValues(new Uint8Array(32));
  const s2c = crypto.getRandomValues(new Uint8Array(32));
  const cookies = ring.makeCookies(AEAD_AES_SIV_CMAC_256, c2s, s2c, count);
  const parts: Uint8Array[] = [];
  let requestLength = 0;
  for (let i = 0; i < count; i++) {
    // A full jar: the request carries one cookie and asks for none more.
    const s = new NtsSession({
      aeadId: AEAD_AES_SIV_CMAC_256,
      c2s,
      s2c,
      cookies: Array(8).fill(cookies[i]!),
    });
    const header = new Uint8Array(48);
    header[0] = 0x23; // NTPv4, client
    const v = new DataView(header.buffer);
    v.setUint32(40, (crypto.getRandomValues(new Uint32Array(1))[0]! | 1) >>> 0);
    const low = crypto.getRandomValues(new Uint32Array(1))[0]!;
    v.setUint32(44, ((low & ~((1 << SLOT_BITS) - 1)) | i) >>> 0);
    const req = s.request(header)!;
    s.seal(req);
    requestLength = req.length;
    parts.push(new Uint8Array([req.length >> 8, req.length & 0xff]), req);
  }
  const templateFile = `${dir}/nts-requests.bin`;
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  await Deno.writeFile(templateFile, all);
  return { masterKeyFile, templateFile, requestLength };
}
