/**
 * The status HTTP server: binds `status.listen` only, read-only, with a
 * cap on concurrent requests so a misbehaving scraper cannot starve the
 * process. The NTP server runs in workers and is not slowed by it.
 */
import { parseSocketAddress, type SocketAddress } from "../config/socket_address.ts";
import { handleStatusRequest, type StatusSource } from "./handler.ts";

const MAX_CONCURRENT = 32;
const MAX_URL_LENGTH = 2048;

export interface StatusServer {
  address: string;
  close(): Promise<void>;
}

export function startStatusServer(listen: string, source: StatusSource): StatusServer {
  const addr = parseSocketAddress(listen) as SocketAddress;
  let active = 0;
  const server = Deno.serve(
    { hostname: addr.hostname, port: addr.port, onListen: () => {} },
    (req) => {
      if (req.url.length > MAX_URL_LENGTH) return new Response("URI too long\n", { status: 414 });
      if (active >= MAX_CONCURRENT) return new Response("Busy\n", { status: 503 });
      active++;
      try {
        return handleStatusRequest(req, source);
      } finally {
        active--;
      }
    },
  );
  const a = server.addr as Deno.NetAddr;
  return {
    address: a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`,
    close: () => server.shutdown(),
  };
}
