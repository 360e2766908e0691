/**
 * The send latency of a socket layer: seconds from the clock reading a
 * driver takes right before `send()` to the kernel's transmit timestamp of
 * that packet (`SOF_TIMESTAMPING_TX_SOFTWARE`, taken as the packet is
 * handed to the device).
 *
 * Why: a basic-mode symmetric packet carries that reading as its `xmt`,
 * so it is early by the send latency; a peer whose t1 is a kernel stamp
 * then reads us half of it behind, and we read it the same way. Peer pull
 * turned that bias into a common offset of the cluster
 * (docs/benchmarks/topology.md). Writing reading + estimate as the `xmt`
 * is the departure time as well as we can predict it; the kernel's stamp
 * is known only after the send (interleaved mode uses it, RFC 9769).
 *
 * The estimate is the median of the last `WINDOW` latencies, so a
 * preempted send (a spike) moves it little; 0 until `MIN_SAMPLES` are in.
 * Readings outside [0, `MAX_LATENCY_S`] are ignored (a stamp matched to
 * the wrong send, a clock step).
 */
export const WINDOW = 31;
export const MIN_SAMPLES = 8;
export const MAX_LATENCY_S = 0.001;

export class SendLatency {
  /**
   * `quantile` of the window that is the estimate: 0.5 (the median) for
   * symmetric packets; a server's replies use a low one (reply_latency.ts).
   */
  constructor(readonly quantile = 0.5) {}

  readonly #ring = new Float64Array(WINDOW);
  #n = 0;
  #next = 0;
  #estimate = 0;

  /** One measured latency, seconds: kernel transmit stamp minus the reading before `send()`. */
  add(seconds: number): void {
    if (!(seconds >= 0 && seconds <= MAX_LATENCY_S)) return;
    this.#ring[this.#next] = seconds;
    this.#next = (this.#next + 1) % WINDOW;
    if (this.#n < WINDOW) this.#n++;
    if (this.#n < MIN_SAMPLES) return;
    const xs = Array.from(this.#ring.subarray(0, this.#n)).sort((a, b) => a - b);
    this.#estimate = xs[Math.floor((xs.length - 1) * this.quantile)]!;
  }

  /** The latency at `quantile` (the median by default), seconds; 0 before `MIN_SAMPLES` measurements. */
  get estimate(): number {
    return this.#estimate;
  }
}
