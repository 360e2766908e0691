/**
 * A TLS session (lib/io/openssl.ts, memory BIOs) over a Deno TCP
 * connection: reads from the socket feed OpenSSL, OpenSSL's output is
 * written back, so the event loop never blocks. One owner, one
 * request/response exchange at a time (what NTS-KE needs).
 */
import { type TlsSession } from "./openssl.ts";

const READ_CHUNK = 16384;

export class TlsStream {
  readonly #conn: Deno.Conn;
  readonly session: TlsSession;
  readonly #buf = new Uint8Array(READ_CHUNK);
  #closed = false;

  constructor(conn: Deno.TcpConn, session: TlsSession) {
    this.#conn = conn;
    this.session = session;
    // TLS sends small flights back to back (Finished, then the request): with Nagle the
    // second waits for the peer's delayed ACK, 40 ms on Linux, on every exchange.
    conn.setNoDelay(true);
  }

  /** Sends whatever OpenSSL has queued. */
  async flush(): Promise<void> {
    for (let out = this.session.takeOutput(); out; out = this.session.takeOutput()) {
      let at = 0;
      while (at < out.length) at += await this.#conn.write(out.subarray(at));
    }
  }

  /** Reads once from the socket into the session; false at end of stream. */
  async #fill(): Promise<boolean> {
    const n = await this.#conn.read(this.#buf);
    if (n === null) return false;
    this.session.feed(this.#buf.subarray(0, n));
    return true;
  }

  /**
   * Runs the handshake to its end. Throws the session's TlsError (after
   * sending its alert) or "connection closed during the TLS handshake".
   */
  async handshake(): Promise<void> {
    for (;;) {
      let state;
      try {
        state = this.session.handshake();
      } catch (e) {
        await this.flush().catch(() => {}); // the alert, if any
        throw e;
      }
      await this.flush();
      if (state === "done") return;
      if (!(await this.#fill())) throw new Error("connection closed during the TLS handshake");
    }
  }

  /**
   * Reads plaintext until `done(all so far)` says enough or the peer closes.
   * Returns everything read and whether the peer closed.
   */
  async readUntil(
    done: (all: Uint8Array) => boolean,
  ): Promise<{ data: Uint8Array; closed: boolean }> {
    let all: Uint8Array = new Uint8Array(0);
    for (;;) {
      const plain = this.session.read();
      await this.flush(); // TLS 1.3 may answer post-handshake messages
      if (plain === null) return { data: all, closed: true };
      if (plain.length > 0) {
        const next = new Uint8Array(all.length + plain.length);
        next.set(all);
        next.set(plain, all.length);
        all = next;
        if (done(all)) return { data: all, closed: false };
      }
      if (!(await this.#fill())) return { data: all, closed: true };
    }
  }

  /** Encrypts and sends `plain`. */
  async write(plain: Uint8Array): Promise<void> {
    this.session.write(plain);
    await this.flush();
  }

  /** Sends close_notify (best effort), closes the socket and frees the session. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      this.session.shutdown();
      await this.flush();
    } catch { /* the peer may be gone */ }
    this.abort();
  }

  /**
   * Encrypts `plain`, adds close_notify, sends both in one write and
   * closes: a server's last message costs one send, not two.
   */
  async writeAndClose(plain: Uint8Array): Promise<void> {
    this.session.write(plain);
    this.session.shutdown();
    try {
      await this.flush();
    } finally {
      this.abort();
    }
  }

  /** Closes the socket and frees the session at once (timeouts, errors). Idempotent. */
  abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* closed by the peer's reset */ }
    this.session.free();
  }
}
