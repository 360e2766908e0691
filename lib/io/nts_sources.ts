/**
 * The NTS client side of the engine's sources (RFC 8915 §5.7, chrony's
 * nts_ntp_client.c practice): per association, the NTS-KE with the
 * source's name (lib/io/nts_ke_client.ts), the keys and cookie jar
 * (lib/nts/client.ts), and the NTP server and port the KE named.
 *
 * - No cookies (first poll, jar used up, NTS NAK): a key exchange starts
 *   and that poll sends nothing; the next poll after it uses the new
 *   cookies. A failed KE is retried at a poll no sooner than `retry`
 *   seconds later (doubling from 16 s up to 1024 s; chrony backs off too).
 * - Each request uses one cookie and asks for the missing ones with
 *   placeholders, so a source that answers keeps the jar at 8.
 * - Replies that do not verify never reach the engine, which thus only
 *   sees authenticated packets (its own checks — origin, replay — still run).
 */
import { lookup } from "node:dns/promises";
import { parseIp } from "../ntp/address.ts";
import { HEADER_LEN } from "../ntp/packet.ts";
import type { NtsSourceReport } from "../engine/report.ts";
import { NtsSession } from "../nts/client.ts";
import { SUPPORTED_AEADS } from "../nts/aead.ts";
import type { NtsKeOptions, NtsKeResult } from "./nts_ke_client.ts";

/** Runs one NTS-KE (lib/io/nts_ke_client.ts `ntsKeyExchange`; tests pass their own). */
export type KeyExchange = (o: NtsKeOptions) => Promise<NtsKeResult>;

/** What the driver knows of an NTS source's configuration. */
export interface NtsSourceConfig {
  /** The name (or address) the KE connects to and checks the certificate against. */
  host: string;
  /** NTS-KE port. */
  port: number;
  /** CA file; "" = the system's. */
  caFile: string;
}

const KE_TIMEOUT_MS = 10_000;
const RETRY_MIN_S = 16;
const RETRY_MAX_S = 1024;

interface Entry {
  config: NtsSourceConfig;
  session: NtsSession | null;
  /** Where NTP goes: the KE's server, resolved. */
  endpoint: { host: string; port: number } | null;
  report: NtsSourceReport;
  keRunning: boolean;
  /** Raw time before which no new KE starts (after a failure). */
  retryAt: number;
  retryS: number;
}

/** The NTS state of every NTS association of the engine. */
export class NtsSources {
  readonly #entries = new Map<string, Entry>();
  readonly #ke: KeyExchange;
  readonly #now: () => number;
  readonly #log: (level: "info" | "warning", line: string) => void;
  /** Called when a KE finished, so the driver can open the socket for the new endpoint. */
  onReady: (id: string) => void = () => {};

  constructor(
    ke: KeyExchange,
    log: (level: "info" | "warning", line: string) => void,
    now: () => number = () => Date.now() / 1000,
  ) {
    this.#ke = ke;
    this.#log = log;
    this.#now = now;
  }

  /** Association `id` is an NTS one with `config` (kept when unchanged). */
  track(id: string, config: NtsSourceConfig): void {
    const e = this.#entries.get(id);
    if (e && JSON.stringify(e.config) === JSON.stringify(config)) return;
    this.#entries.set(id, {
      config,
      session: null,
      endpoint: null,
      keRunning: false,
      retryAt: 0,
      retryS: RETRY_MIN_S,
      report: {
        state: "idle",
        cookies: 0,
        key_exchanges: 0,
        authenticated: 0,
        naks: 0,
        rejected: 0,
        ntp_server: "",
        ke_server: hostPort(config.host, config.port),
        error: "",
      },
    });
  }

  /** Forgets association `id`. */
  forget(id: string): void {
    this.#entries.delete(id);
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Where association `id`'s NTP goes (the KE's server), or null before a KE. */
  endpoint(id: string): { host: string; port: number } | null {
    return this.#entries.get(id)?.endpoint ?? null;
  }

  /**
   * The request for association `id` built on the 48-byte `header`, and
   * the step that completes its authenticator once `xmt` is written; null
   * when there are no cookies (a KE is started if none runs, `resolvedHost`
   * being the association's address, used when the KE names the KE host).
   */
  request(
    id: string,
    header: Uint8Array,
    resolvedHost: string,
  ): { bytes: Uint8Array; seal: (bytes: Uint8Array) => void } | null {
    const e = this.#entries.get(id);
    if (!e) return null;
    const bytes = e.session && e.endpoint ? e.session.request(header) : null;
    if (!bytes) {
      this.#startKe(id, e, resolvedHost);
      return null;
    }
    e.report.cookies = e.session!.cookies.length;
    const session = e.session!;
    return { bytes, seal: (b) => session.seal(b) };
  }

  /**
   * A datagram for NTS association `id`: its 48-byte header when it is an
   * authentic reply to the request in flight (the engine takes it from
   * there), else null (dropped; an NTS NAK drops the keys and cookies, so
   * the next poll makes a new KE).
   */
  accept(id: string, bytes: Uint8Array): Uint8Array | null {
    const e = this.#entries.get(id);
    if (!e?.session) return null;
    const v = e.session.verify(bytes);
    if (v === "ok") {
      e.report.authenticated++;
      e.report.cookies = e.session.cookies.length;
      return bytes.subarray(0, HEADER_LEN);
    }
    if (v === "nak") {
      e.report.naks++;
      e.report.error = "NTS NAK: the server does not take our cookies; new key exchange";
      e.report.cookies = 0;
      e.session = null;
      this.#log("warning", `${e.config.host}: NTS NAK; a new key exchange follows`);
      return null;
    }
    e.report.rejected++;
    e.report.error = `reply dropped: ${e.session.lastError}`;
    return null;
  }

  /** The status of association `id`, if it is an NTS one. */
  report(id: string): NtsSourceReport | undefined {
    const e = this.#entries.get(id);
    return e ? { ...e.report } : undefined;
  }

  #startKe(id: string, e: Entry, resolvedHost: string): void {
    if (e.keRunning || this.#now() < e.retryAt) return;
    e.keRunning = true;
    e.report.state = "key-exchange";
    const c = e.config;
    const opts: NtsKeOptions = {
      host: c.host,
      port: c.port,
      aeads: [...SUPPORTED_AEADS],
      timeoutMs: KE_TIMEOUT_MS,
      ...(c.caFile === "" ? {} : { caFile: c.caFile }),
    };
    void (async () => {
      try {
        const r = await this.#ke(opts);
        const session = new NtsSession(r);
        const host = await ntpHost(r.ntpServer, c.host, resolvedHost);
        if (this.#entries.get(id) !== e) return; // forgotten meanwhile
        e.session = session;
        e.endpoint = { host, port: r.ntpPort };
        e.retryS = RETRY_MIN_S;
        e.report.state = "ready";
        e.report.key_exchanges++;
        e.report.cookies = session.cookies.length;
        e.report.ntp_server = hostPort(host, r.ntpPort);
        e.report.error = "";
        if (e.report.key_exchanges === 1) {
          this.#log(
            "info",
            `${c.host}: NTS-KE done (AEAD ${r.aeadId}, ${r.cookies.length} cookies), NTP to ${e.report.ntp_server}`,
          );
        }
        this.onReady(id);
      } catch (err) {
        if (this.#entries.get(id) !== e) return;
        const line = err instanceof Error ? err.message : String(err);
        if (e.report.error !== line) this.#log("warning", `${line}; retrying in ${e.retryS} s`);
        e.report.state = "failed";
        e.report.error = line;
        e.retryAt = this.#now() + e.retryS;
        e.retryS = Math.min(RETRY_MAX_S, e.retryS * 2);
      } finally {
        e.keRunning = false;
      }
    })();
  }
}

/** `host:port`, an IPv6 address in brackets. */
function hostPort(host: string, port: number): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return bare.includes(":") ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/**
 * The address NTP goes to: the KE's server record, which is our KE host
 * itself when absent (then the association's own address), an IP literal,
 * or a name to resolve.
 */
async function ntpHost(server: string, keHost: string, resolvedHost: string): Promise<string> {
  const bare = server.replace(/^\[(.*)\]$/, "$1");
  if (bare === "" || bare.toLowerCase() === keHost.replace(/^\[(.*)\]$/, "$1").toLowerCase()) {
    return resolvedHost;
  }
  if (parseIp(bare)) return bare;
  const r = await lookup(bare);
  return r.address;
}
