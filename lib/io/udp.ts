/**
 * Chooses the UDP driver: the libc recvmmsg/sendmmsg driver with kernel
 * timestamps when FFI is available, else the portable node:dgram driver.
 */
import type { SocketAddress } from "../config/socket_address.ts";
import type { ServerSocket } from "./server_socket.ts";
import { probeLibc } from "./libc.ts";

export interface OpenedSocket {
  socket: ServerSocket;
  /** Why this driver runs, when it is not the one asked for. */
  note: string;
}

/** Whether the FFI driver can run here, and if not, why. */
export function ffiAvailability(): { ok: boolean; reason: string } {
  if (Deno.build.os !== "linux") {
    return { ok: false, reason: `FFI driver needs Linux, this is ${Deno.build.os}` };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { ok: false, reason: "FFI driver needs --allow-ffi" };
  }
  const libcProblem = probeLibc();
  if (libcProblem) return { ok: false, reason: libcProblem };
  return { ok: true, reason: "" };
}

// Loaded only when used: node:dgram brings the Node compatibility layer
// into the worker, megabytes of heap the FFI driver does not need.
async function openPortableSocket(addr: SocketAddress): Promise<ServerSocket> {
  return (await import("./udp_portable.ts")).openPortableSocket(addr);
}

export async function openServerSocket(
  addr: SocketAddress,
  driver: "ffi" | "portable",
  reusePort: boolean,
): Promise<OpenedSocket> {
  if (driver === "ffi") {
    const avail = ffiAvailability();
    if (avail.ok) {
      const { openFfiSocket } = await import("./udp_ffi.ts");
      return { socket: await openFfiSocket(addr, reusePort), note: "" };
    }
    return { socket: await openPortableSocket(addr), note: avail.reason };
  }
  return { socket: await openPortableSocket(addr), note: "" };
}

/**
 * Whether `addr` is free for us: binds a plain socket there (no
 * SO_REUSEADDR, no SO_REUSEPORT) and closes it. The server's workers share
 * their port through SO_REUSEPORT, which another process of the same user
 * — a second edge-time — could join silently and take half the clients;
 * this probe makes that a bind error instead. Returns null, or the one
 * line `Cannot listen on ADDR: address already in use (…)`. Without FFI it
 * cannot probe and returns null.
 */
export async function probeAddress(addr: SocketAddress): Promise<string | null> {
  if (!ffiAvailability().ok) return null;
  const { probeBind } = await import("./udp_ffi.ts");
  return probeBind(addr);
}
