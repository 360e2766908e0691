/** Linux UDP driver over libc recvmmsg/sendmmsg (being written; see issue 3). */
import type { SocketAddress } from "../config/socket_address.ts";
import type { ServerSocket } from "./server_socket.ts";
import { openPortableSocket } from "./udp_portable.ts";

export function openFfiSocket(addr: SocketAddress, _reusePort: boolean): Promise<ServerSocket> {
  return openPortableSocket(addr);
}
