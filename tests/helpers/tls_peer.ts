/**
 * `openssl s_server` and `openssl s_client` as independent TLS peers for
 * NTS-KE tests: a server that lacks ALPN or speaks TLS 1.2 only, a client
 * that offers other ALPN or TLS 1.2.
 */

/** A random high TCP port (tests run side by side: never a fixed one). */
export function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitForTcp(port: number, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch (e) {
      if (Date.now() > end) throw new Error(`Nothing listens on 127.0.0.1:${port}: ${e}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Starts `openssl s_server` on 127.0.0.1:`port` with `extra` args; stop() ends it. */
export async function startOpensslServer(
  port: number,
  cert: string,
  key: string,
  extra: string[],
): Promise<{ stop(): Promise<void> }> {
  const child = new Deno.Command("openssl", {
    args: ["s_server", "-accept", `127.0.0.1:${port}`, "-cert", cert, "-key", key, ...extra],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForTcp(port);
  return {
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.stdin.close().catch(() => {});
      await child.status;
    },
  };
}

/**
 * `openssl s_client` to 127.0.0.1:`port` with `extra` args: its output
 * (stdout and stderr) once it has finished the handshake or failed.
 */
export async function opensslClient(port: number, extra: string[]): Promise<string> {
  const out = await new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, ...extra],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return d.decode(out.stdout) + d.decode(out.stderr);
}
