/**
 * OpenSSL 3 (libssl.so.3, libcrypto.so.3) through Deno FFI: TLS 1.3 with
 * memory BIOs, for NTS-KE (RFC 8915). Deno's own TLS (Deno.connectTls,
 * node:tls) has no keying material exporter (RFC 5705 / RFC 8446 §7.5),
 * which NTS-KE needs for its C2S and S2C keys; OpenSSL has
 * `SSL_export_keying_material`.
 *
 * Nothing here touches a socket: the caller moves bytes between its TCP
 * connection and a `TlsSession` (`feed` what arrived, send what `takeOutput`
 * returns), so no OpenSSL call ever blocks the event loop. The one place
 * that knows OpenSSL's symbols, constants and error queue.
 */

const SSL_SYMBOLS = {
  TLS_server_method: { parameters: [], result: "pointer" },
  TLS_client_method: { parameters: [], result: "pointer" },
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  SSL_CTX_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  SSL_CTX_use_certificate_chain_file: { parameters: ["pointer", "buffer"], result: "i32" },
  SSL_CTX_use_PrivateKey_file: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_get0_certificate: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_set_alpn_select_cb: {
    parameters: ["pointer", "function", "pointer"],
    result: "void",
  },
  SSL_CTX_set_verify: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  SSL_CTX_load_verify_locations: {
    parameters: ["pointer", "buffer", "pointer"],
    result: "i32",
  },
  SSL_CTX_set_default_verify_paths: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_set_num_tickets: { parameters: ["pointer", "usize"], result: "i32" },
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  SSL_free: { parameters: ["pointer"], result: "void" },
  SSL_set_bio: { parameters: ["pointer", "pointer", "pointer"], result: "void" },
  SSL_set_accept_state: { parameters: ["pointer"], result: "void" },
  SSL_set_connect_state: { parameters: ["pointer"], result: "void" },
  SSL_do_handshake: { parameters: ["pointer"], result: "i32" },
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  SSL_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  SSL_version: { parameters: ["pointer"], result: "i32" },
  SSL_set_alpn_protos: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  SSL_get0_alpn_selected: { parameters: ["pointer", "buffer", "buffer"], result: "void" },
  SSL_set1_host: { parameters: ["pointer", "buffer"], result: "i32" },
  SSL_get0_param: { parameters: ["pointer"], result: "pointer" },
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  SSL_export_keying_material: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "buffer", "usize", "i32"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

const CRYPTO_SYMBOLS = {
  BIO_s_mem: { parameters: [], result: "pointer" },
  BIO_new: { parameters: ["pointer"], result: "pointer" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  BIO_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  ERR_get_error: { parameters: [], result: "u64" },
  ERR_error_string_n: { parameters: ["u64", "buffer", "usize"], result: "void" },
  ERR_clear_error: { parameters: [], result: "void" },
  X509_get0_notAfter: { parameters: ["pointer"], result: "pointer" },
  X509_get0_notBefore: { parameters: ["pointer"], result: "pointer" },
  X509_cmp_current_time: { parameters: ["pointer"], result: "i32" },
  ASN1_TIME_diff: { parameters: ["buffer", "buffer", "pointer", "pointer"], result: "i32" },
  X509_VERIFY_PARAM_set1_ip_asc: { parameters: ["pointer", "buffer"], result: "i32" },
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Ssl = Deno.DynamicLibrary<typeof SSL_SYMBOLS>["symbols"];
type Crypto = Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"];

/** OpenSSL constants (ssl.h, tls1.h, bio.h). */
const TLS1_2_VERSION = 0x0303;
const TLS1_3_VERSION = 0x0304;
const SSL_CTRL_SET_TLSEXT_HOSTNAME = 55;
const SSL_CTRL_SET_MIN_PROTO_VERSION = 123;
const SSL_CTRL_SET_MAX_PROTO_VERSION = 124;
const TLSEXT_NAMETYPE_HOST_NAME = 0;
const SSL_FILETYPE_PEM = 1;
const SSL_VERIFY_PEER = 1;
const SSL_ERROR_SSL = 1;
const SSL_ERROR_WANT_READ = 2;
const SSL_ERROR_WANT_WRITE = 3;
const SSL_ERROR_SYSCALL = 5;
const SSL_ERROR_ZERO_RETURN = 6;
const SSL_TLSEXT_ERR_OK = 0;
const SSL_TLSEXT_ERR_ALERT_FATAL = 2;
const BIO_CTRL_PENDING = 10;
const BIO_C_SET_BUF_MEM_EOF_RETURN = 130;

/** int (*)(SSL *, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen, void *arg) */
const ALPN_SELECT = {
  parameters: ["pointer", "pointer", "pointer", "pointer", "u32", "pointer"],
  result: "i32",
} as const;

let lib: { ssl: Ssl; crypto: Crypto } | undefined;

/** Opens libssl.so.3 and libcrypto.so.3 once; throws one line if they cannot be opened. */
function openssl(): { ssl: Ssl; crypto: Crypto } {
  if (lib) return lib;
  try {
    const crypto = Deno.dlopen("libcrypto.so.3", CRYPTO_SYMBOLS).symbols;
    const ssl = Deno.dlopen("libssl.so.3", SSL_SYMBOLS).symbols;
    lib = { ssl, crypto };
    return lib;
  } catch (e) {
    throw new Error(
      `Cannot open OpenSSL 3 (libssl.so.3) through FFI: ${e instanceof Error ? e.message : e}`,
    );
  }
}

/** Whether OpenSSL 3 can be opened here; the reason if not. */
export function probeOpenssl(): string | null {
  try {
    openssl();
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

const encoder = new TextEncoder();
const cString = (s: string): Uint8Array<ArrayBuffer> => encoder.encode(s + "\0");

/** Drains OpenSSL's error queue into one line ("" when empty). */
function errorQueue(): string {
  const { crypto } = openssl();
  const parts: string[] = [];
  const buf = new Uint8Array(256);
  for (;;) {
    const code = crypto.ERR_get_error();
    if (code === 0n) break;
    crypto.ERR_error_string_n(code, buf, 256n);
    const text = new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
    // "error:0A000086:SSL routines::certificate verify failed" → the reason.
    const reason = text.split(":").slice(4).join(":") || text;
    if (!parts.includes(reason)) parts.push(reason);
  }
  // "system lib" only says errno came from the system: the errno text is already there.
  if (parts.length > 1) return parts.filter((p) => p !== "system lib").join("; ");
  return parts.join("; ");
}

/**
 * Why `path` cannot be read ("no such file", "permission denied", …), or
 * null when it can: said before OpenSSL tries, whose own words for a
 * missing file come twice ("No such file or directory; no such file").
 */
function unreadable(path: string): string | null {
  try {
    Deno.openSync(path, { read: true }).close();
    return null;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "no such file";
    if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
    return e instanceof Error ? e.message : String(e);
  }
}

/** A TLS failure, with OpenSSL's reason in the message. */
export class TlsError extends Error {
  override name = "TlsError";
}

/** Files of a TLS server: a PEM certificate chain (leaf first) and its PEM private key. */
export interface ServerCredentials {
  certificate: string;
  privateKey: string;
}

/**
 * An SSL_CTX: TLS 1.3 only, with the ALPN protocol every session must
 * agree on. Free it with `free()` once no session uses it.
 */
export class TlsContext {
  #ctx: Deno.PointerValue;
  #alpnCallback: Deno.UnsafeCallback<typeof ALPN_SELECT> | null = null;
  readonly role: "server" | "client";
  readonly alpn: string;
  /** Server: when the leaf certificate stops being valid, Unix seconds (null for a client). */
  notAfter: number | null = null;

  private constructor(ctx: Deno.PointerValue, role: "server" | "client", alpn: string) {
    this.#ctx = ctx;
    this.role = role;
    this.alpn = alpn;
  }

  /** The SSL_CTX pointer, for sessions. */
  get pointer(): Deno.PointerValue {
    return this.#ctx;
  }

  /**
   * A server context with the chain and key from `files`: TLS 1.3 only,
   * ALPN `alpn` required (a client that offers other protocols, or none,
   * gets a fatal no_application_protocol alert), no session tickets.
   * Throws one line naming the file that failed: missing, unreadable, not
   * PEM, key not matching, certificate expired or not yet valid.
   */
  static server(files: ServerCredentials, alpn: string): TlsContext {
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    const ctx = ssl.SSL_CTX_new(ssl.TLS_server_method());
    if (ctx === null) throw new TlsError(`Cannot create a TLS context: ${errorQueue()}`);
    const t = new TlsContext(ctx, "server", alpn);
    try {
      t.#tls13Only();
      for (const file of [files.certificate, files.privateKey]) {
        const why = unreadable(file);
        if (why !== null) throw new TlsError(`${file}: ${why}`);
      }
      if (ssl.SSL_CTX_use_certificate_chain_file(ctx, cString(files.certificate)) !== 1) {
        throw new TlsError(`${files.certificate}: cannot load certificate: ${errorQueue()}`);
      }
      if (ssl.SSL_CTX_use_PrivateKey_file(ctx, cString(files.privateKey), SSL_FILETYPE_PEM) !== 1) {
        const why = errorQueue();
        throw new TlsError(
          /key values mismatch/.test(why)
            ? `${files.privateKey}: private key does not match ${files.certificate}`
            : `${files.privateKey}: cannot load private key: ${why}`,
        );
      }
      if (ssl.SSL_CTX_check_private_key(ctx) !== 1) {
        throw new TlsError(
          `${files.privateKey}: private key does not match ${files.certificate}: ${errorQueue()}`,
        );
      }
      const x509 = ssl.SSL_CTX_get0_certificate(ctx);
      if (x509 !== null) {
        if (crypto.X509_cmp_current_time(crypto.X509_get0_notAfter(x509)) < 0) {
          throw new TlsError(`${files.certificate}: certificate has expired`);
        }
        if (crypto.X509_cmp_current_time(crypto.X509_get0_notBefore(x509)) > 0) {
          throw new TlsError(`${files.certificate}: certificate is not valid yet`);
        }
        // Days and seconds from now (NULL) to notAfter.
        const days = new Int32Array(1), secs = new Int32Array(1);
        if (crypto.ASN1_TIME_diff(days, secs, null, crypto.X509_get0_notAfter(x509)) === 1) {
          t.notAfter = Math.floor(Date.now() / 1000) + days[0]! * 86400 + secs[0]!;
        }
      }
      ssl.SSL_CTX_set_num_tickets(ctx, 0n); // one KE per connection: tickets are never used
      t.#selectAlpn(alpn);
      return t;
    } catch (e) {
      t.free();
      throw e;
    }
  }

  /**
   * A client context: TLS 1.3 only, peer certificate verified against
   * `caFile` (PEM bundle), or the system's default trust store when omitted.
   */
  static client(alpn: string, caFile?: string): TlsContext {
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    const ctx = ssl.SSL_CTX_new(ssl.TLS_client_method());
    if (ctx === null) throw new TlsError(`Cannot create a TLS context: ${errorQueue()}`);
    const t = new TlsContext(ctx, "client", alpn);
    try {
      t.#tls13Only();
      ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, null);
      if (caFile !== undefined) {
        const why = unreadable(caFile);
        if (why !== null) throw new TlsError(`${caFile}: ${why}`);
        if (ssl.SSL_CTX_load_verify_locations(ctx, cString(caFile), null) !== 1) {
          throw new TlsError(`${caFile}: cannot load CA certificates: ${errorQueue()}`);
        }
      } else if (ssl.SSL_CTX_set_default_verify_paths(ctx) !== 1) {
        throw new TlsError(`Cannot load the system's CA certificates: ${errorQueue()}`);
      }
      return t;
    } catch (e) {
      t.free();
      throw e;
    }
  }

  #tls13Only(): void {
    const { ssl } = openssl();
    if (
      ssl.SSL_CTX_ctrl(this.#ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, BigInt(TLS1_3_VERSION), null) !==
        1n ||
      ssl.SSL_CTX_ctrl(this.#ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, BigInt(TLS1_3_VERSION), null) !==
        1n
    ) {
      throw new TlsError(`Cannot restrict TLS to version 1.3: ${errorQueue()}`);
    }
  }

  /**
   * Server ALPN: select `alpn` when the client offers it, else a fatal
   * alert. OpenSSL calls back synchronously inside SSL_do_handshake, on
   * this thread, so a plain (not thread-safe) callback is enough.
   */
  #selectAlpn(alpn: string): void {
    const want = encoder.encode(alpn);
    const cb = new Deno.UnsafeCallback(
      ALPN_SELECT,
      (_ssl, out, outlen, inp, inlen, _arg) => {
        if (out === null || outlen === null || inp === null) return SSL_TLSEXT_ERR_ALERT_FATAL;
        const offered = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(inp, inlen));
        const at = findProtocol(offered, want);
        if (at < 0) return SSL_TLSEXT_ERR_ALERT_FATAL;
        // *out points into the client's list (OpenSSL keeps it alive), *outlen its length.
        const p = Deno.UnsafePointer.offset(inp, at);
        new DataView(Deno.UnsafePointerView.getArrayBuffer(out, 8)).setBigUint64(
          0,
          BigInt(Deno.UnsafePointer.value(p)),
          true,
        );
        new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(outlen, 1))[0] = want.length;
        return SSL_TLSEXT_ERR_OK;
      },
    );
    this.#alpnCallback = cb;
    openssl().ssl.SSL_CTX_set_alpn_select_cb(this.#ctx, cb.pointer, null);
  }

  /** Frees the SSL_CTX (sessions hold their own reference) and the ALPN callback. */
  free(): void {
    if (this.#ctx === null) return;
    openssl().ssl.SSL_CTX_free(this.#ctx);
    this.#ctx = null;
    // #alpnCallback stays: live sessions still hold the SSL_CTX and keep this object alive.
  }
}

/**
 * Offset of the protocol name `want` in an ALPN wire list (length-prefixed
 * names), pointing at the name's first byte; -1 when absent or malformed.
 */
export function findProtocol(list: Uint8Array, want: Uint8Array): number {
  let i = 0;
  while (i < list.length) {
    const n = list[i]!;
    if (i + 1 + n > list.length) return -1;
    if (n === want.length && want.every((b, k) => list[i + 1 + k] === b)) return i + 1;
    i += 1 + n;
  }
  return -1;
}

/** Progress of a handshake: done, or more bytes from the peer are needed. */
export type HandshakeState = "done" | "want-read";

const CHUNK = 16384;

/**
 * One TLS connection over two memory BIOs. The owner feeds ciphertext in
 * (`feed`), drives `handshake`, `read` and `write`, and sends what
 * `takeOutput` returns. Not thread-safe; one owner. `free()` when done.
 */
export class TlsSession {
  #ssl: Deno.PointerValue;
  #rbio: Deno.PointerValue;
  #wbio: Deno.PointerValue;
  readonly #buf = new Uint8Array(CHUNK);
  // Keeps the context (and its ALPN callback) alive as long as the session.
  readonly #ctx: TlsContext;

  /**
   * A session on `ctx`. For a client, `host` is the server's name: sent as
   * SNI (names only) and checked against the certificate (DNS name or IP
   * address SAN).
   */
  constructor(ctx: TlsContext, host?: string) {
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    this.#ctx = ctx;
    this.#ssl = ssl.SSL_new(ctx.pointer);
    if (this.#ssl === null) throw new TlsError(`Cannot create a TLS session: ${errorQueue()}`);
    this.#rbio = crypto.BIO_new(crypto.BIO_s_mem());
    this.#wbio = crypto.BIO_new(crypto.BIO_s_mem());
    // An empty read BIO means "want more", not end of file.
    crypto.BIO_ctrl(this.#rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1n, null);
    ssl.SSL_set_bio(this.#ssl, this.#rbio, this.#wbio); // the SSL owns both BIOs now
    if (ctx.role === "server") {
      ssl.SSL_set_accept_state(this.#ssl);
      return;
    }
    ssl.SSL_set_connect_state(this.#ssl);
    const name = encoder.encode(ctx.alpn);
    const protos = new Uint8Array(1 + name.length);
    protos[0] = name.length;
    protos.set(name, 1);
    if (ssl.SSL_set_alpn_protos(this.#ssl, protos, protos.length) !== 0) {
      this.free();
      throw new TlsError(`Cannot set ALPN: ${errorQueue()}`);
    }
    if (host !== undefined) this.#verifyHost(host);
  }

  #verifyHost(host: string): void {
    const { ssl, crypto } = openssl();
    const bare = host.replace(/^\[(.*)\]$/, "$1");
    const isIp = /^[0-9.]+$/.test(bare) || bare.includes(":");
    const name = cString(bare);
    const ok = isIp
      ? crypto.X509_VERIFY_PARAM_set1_ip_asc(ssl.SSL_get0_param(this.#ssl), name) === 1
      : ssl.SSL_set1_host(this.#ssl, name) === 1 &&
        ssl.SSL_ctrl(
            this.#ssl,
            SSL_CTRL_SET_TLSEXT_HOSTNAME,
            BigInt(TLSEXT_NAMETYPE_HOST_NAME),
            Deno.UnsafePointer.of(name),
          ) === 1n;
    if (!ok) {
      this.free();
      throw new TlsError(`Cannot verify the name ${host}: ${errorQueue()}`);
    }
  }

  /** Throws once the session has been freed (a late read after a timeout must not reach C). */
  #live(): void {
    if (this.#ssl === null) throw new TlsError("TLS session closed");
  }

  /** Hands ciphertext that arrived from the peer to OpenSSL. */
  feed(bytes: Uint8Array): void {
    this.#live();
    if (bytes.length === 0) return;
    const { crypto } = openssl();
    const n = crypto.BIO_write(this.#rbio, bytes as Uint8Array<ArrayBuffer>, bytes.length);
    if (n !== bytes.length) throw new TlsError("Cannot buffer TLS input");
  }

  /** Ciphertext OpenSSL wants sent to the peer, or null when there is none. */
  takeOutput(): Uint8Array | null {
    this.#live();
    const { crypto } = openssl();
    const pending = Number(crypto.BIO_ctrl(this.#wbio, BIO_CTRL_PENDING, 0n, null));
    if (pending <= 0) return null;
    const out = new Uint8Array(pending);
    let got = 0;
    while (got < pending) {
      const n = crypto.BIO_read(this.#wbio, out.subarray(got), pending - got);
      if (n <= 0) break;
      got += n;
    }
    return out.subarray(0, got);
  }

  /**
   * Advances the handshake with what has been fed. Throws a TlsError with
   * OpenSSL's reason (and the certificate check's, for a client) when the
   * handshake fails; the alert to send is then in `takeOutput`.
   */
  handshake(): HandshakeState {
    this.#live();
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    const r = ssl.SSL_do_handshake(this.#ssl);
    if (r === 1) return "done";
    const err = ssl.SSL_get_error(this.#ssl, r);
    if (err === SSL_ERROR_WANT_READ || err === SSL_ERROR_WANT_WRITE) return "want-read";
    throw new TlsError(this.#failure(err));
  }

  #failure(err: number): string {
    const { ssl, crypto } = openssl();
    let reason = errorQueue();
    const verify = ssl.SSL_get_verify_result(this.#ssl);
    if (verify !== 0n && /certificate verify failed/.test(reason)) {
      const p = crypto.X509_verify_cert_error_string(verify);
      if (p !== null) reason += ` (${Deno.UnsafePointerView.getCString(p)})`;
    }
    if (reason !== "") return reason;
    if (err === SSL_ERROR_ZERO_RETURN) return "connection closed by peer";
    if (err === SSL_ERROR_SYSCALL) return "connection closed during the handshake";
    return err === SSL_ERROR_SSL ? "protocol error" : `SSL error ${err}`;
  }

  /**
   * Decrypts what has been fed: the plaintext (possibly empty when a whole
   * record has not arrived yet), or null once the peer sent close_notify.
   * Throws a TlsError on a protocol failure.
   */
  read(): Uint8Array | null {
    this.#live();
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const n = ssl.SSL_read(this.#ssl, this.#buf, CHUNK);
      if (n > 0) {
        chunks.push(this.#buf.slice(0, n));
        total += n;
        continue;
      }
      const err = ssl.SSL_get_error(this.#ssl, n);
      if (err === SSL_ERROR_WANT_READ || err === SSL_ERROR_WANT_WRITE) break;
      if (err === SSL_ERROR_ZERO_RETURN) {
        if (total > 0) break; // hand over what came before close_notify first
        return null;
      }
      throw new TlsError(this.#failure(err));
    }
    if (chunks.length === 1) return chunks[0]!;
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Encrypts `plain`; the records are then in `takeOutput`. */
  write(plain: Uint8Array): void {
    this.#live();
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    let at = 0;
    while (at < plain.length) {
      const part = plain.subarray(at, Math.min(plain.length, at + CHUNK)) as Uint8Array<
        ArrayBuffer
      >;
      const n = ssl.SSL_write(this.#ssl, part, part.length);
      if (n <= 0) throw new TlsError(this.#failure(ssl.SSL_get_error(this.#ssl, n)));
      at += n;
    }
  }

  /** Queues close_notify (its record is then in `takeOutput`). */
  shutdown(): void {
    this.#live();
    const { ssl, crypto } = openssl();
    ssl.SSL_shutdown(this.#ssl);
    crypto.ERR_clear_error();
  }

  /** The protocol version negotiated, e.g. "TLSv1.3". */
  version(): string {
    this.#live();
    const v = openssl().ssl.SSL_version(this.#ssl);
    return v === TLS1_3_VERSION
      ? "TLSv1.3"
      : v === TLS1_2_VERSION
      ? "TLSv1.2"
      : `0x${v.toString(16)}`;
  }

  /** The ALPN protocol the handshake selected, or null when none was. */
  alpnSelected(): string | null {
    this.#live();
    const ptr = new BigUint64Array(1);
    const len = new Uint32Array(1);
    openssl().ssl.SSL_get0_alpn_selected(this.#ssl, ptr, len);
    const p = Deno.UnsafePointer.create(ptr[0]!);
    if (p === null || len[0] === 0) return null;
    return new TextDecoder().decode(
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, len[0]!)),
    );
  }

  /**
   * RFC 5705 / RFC 8446 §7.5 exporter: `length` bytes for `label` with
   * `context` (always used, so an empty context differs from none).
   */
  exportKeyingMaterial(label: string, context: Uint8Array, length: number): Uint8Array {
    this.#live();
    const { ssl, crypto } = openssl();
    crypto.ERR_clear_error();
    const out = new Uint8Array(length);
    const l = encoder.encode(label);
    const ok = ssl.SSL_export_keying_material(
      this.#ssl,
      out,
      BigInt(length),
      l,
      BigInt(l.length),
      context as Uint8Array<ArrayBuffer>,
      BigInt(context.length),
      1,
    );
    if (ok !== 1) throw new TlsError(`Cannot export keying material: ${errorQueue()}`);
    return out;
  }

  /** Frees the SSL and its BIOs. Safe to call twice. */
  free(): void {
    if (this.#ssl === null) return;
    openssl().ssl.SSL_free(this.#ssl);
    this.#ssl = this.#rbio = this.#wbio = null;
    void this.#ctx;
  }
}
