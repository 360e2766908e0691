/**
 * Generates edge-time configs for property tests: random mixes of valid
 * and invalid source addresses (with duplicates after normalisation),
 * listen and status addresses and numbers in and out of range. Each config
 * comes with the key paths `loadConfig` must report, so a test knows the
 * right verdict without asking the code under test.
 */

/** A small seeded PRNG (mulberry32): the same seed gives the same configs. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GenOptions {
  /**
   * true: any values, for in-process checks. false: values a test process
   * may run with (clock left alone, no drift file, few workers, loopback).
   */
  wide?: boolean;
  /** Ports a run would use: NTP listen (three), status, and the scripted upstream. */
  ports?: { listen: [number, number, number]; status: number; upstream: number };
}

export interface GeneratedConfig {
  text: string;
  /** One entry per error line expected: the key path reported and the key whose line it shows. */
  expected: { path: string; line: string }[];
  /** The valid listen addresses, in order (the first one is queried). */
  listen: string[];
  /** Source addresses that point at the scripted upstream. */
  upstreamSources: number;
}

/** A value and whether loadConfig must accept it. */
type Pick = [value: unknown, ok: boolean];

function pick<T>(rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)]!;
}

/** Valid source addresses, each with equal variants (same source after normalisation). */
function validSources(u: number): { id: string; forms: string[]; upstream: boolean }[] {
  return [
    {
      id: "127.0.0.1",
      forms: [`127.0.0.1:${u}`, `127.0.0.1:0${u}`],
      upstream: true,
    },
    { id: "localhost", forms: [`localhost:${u}`, `LOCALHOST.:${u}`], upstream: false },
    { id: "::1", forms: [`[::1]:${u}`, `[0::1]:${u}`, `[0:0::1]:${u}`], upstream: false },
    { id: "127.0.0.2", forms: [`127.0.0.2:${u}`], upstream: false },
    { id: "192.0.2.1", forms: ["192.0.2.1", "192.0.2.1:123", "192.0.2.1:0123"], upstream: false },
    {
      id: "2001:db8::1",
      forms: ["2001:db8::1", "[2001:db8::1]", "[2001:DB8::1]:123"],
      upstream: false,
    },
    {
      id: "ntp.invalid",
      forms: ["ntp.invalid", "NTP.invalid.", "ntp.invalid:123"],
      upstream: false,
    },
  ];
}

const BAD_SOURCES = [
  "127.0.0.1:99999",
  "127.0.0.1:0",
  "127.0.0.1:abc",
  "127.0.0.1:",
  "[192.0.2.1]:123",
  "[::1",
  "::1]",
  "1.2.3.256",
  "0.0.0.0",
  "224.0.1.1",
  "ff02::101",
  "ntp..example",
  "bad host",
  "fe80::1%eth0",
  "",
];

/** One random config and the errors it must give. */
export function genConfig(rand: () => number, opts: GenOptions = {}): GeneratedConfig {
  const wide = opts.wide ?? false;
  const ports = opts.ports ?? {
    listen: [1123, 1124, 1125] as [number, number, number],
    status: 8123,
    upstream: 2123,
  };
  const expected: { path: string; line: string }[] = [];
  const lines: string[] = [];
  const err = (path: string, line = path) => expected.push({ path, line });
  // Half the configs are clean (every value valid), the others get invalid values at random.
  const clean = rand() < 0.5;
  const bad = (p: number) => !clean && rand() < p;
  const choose = (list: Pick[]): Pick => pick(rand, clean ? list.filter(([, ok]) => ok) : list);
  const emit = (key: string, value: unknown) => lines.push(`${key} = ${toml(value)}`);

  // [server]
  lines.push("[server]");
  const goodListen = [
    `127.0.0.1:${ports.listen[0]}`,
    `[::1]:${ports.listen[1]}`,
    `127.0.0.2:${ports.listen[2]}`,
  ];
  const badListen = [
    "127.0.0.1:99999",
    "127.0.0.1:0",
    `localhost:${ports.listen[0]}`,
    `[127.0.0.1]:${ports.listen[0]}`,
    "127.0.0.1",
    `[::1:${ports.listen[1]}`,
  ];
  const listen: string[] = [];
  const valid: string[] = [];
  const count = bad(0.08) ? 0 : 1 + Math.floor(rand() * 3);
  if (count === 0) err("server.listen");
  for (let i = 0; i < count; i++) {
    if (bad(0.3)) {
      listen.push(pick(rand, badListen));
      err("server.listen");
      continue;
    }
    const a = pick(rand, goodListen);
    if (listen.includes(a) && clean) continue;
    if (listen.includes(a)) err("server.listen"); // listed twice
    else valid.push(a);
    listen.push(a);
  }
  emit("listen", listen);
  const numbers: [string, Pick[]][] = [
    [
      "workers",
      wide ? [[0, true], [2, true], [64, true], [-1, false], [65, false], [1.5, false]] : [
        [1, true],
        [2, true],
      ],
    ],
    ["local_stratum", [[0, true], [8, true], [15, true], [16, false], [-1, false]]],
  ];
  for (const [key, choices] of numbers) {
    if (rand() < 0.5) continue;
    const [v, ok] = choose(choices);
    emit(key, v);
    if (!ok) err(`server.${key}`);
  }
  if (rand() < 0.4) {
    const [interval, iok] = choose([[0, true], [2, true], [3600, true], [-1, false], [
      3601,
      false,
    ]]);
    const [burst, bok] = choose([[1, true], [8, true], [1024, true], [0, false], [1025, false]]);
    lines.push(`rate_limit = { interval_s = ${interval}, burst = ${burst} }`);
    if (!iok) err("server.rate_limit.interval_s");
    if (!bok) err("server.rate_limit.burst");
  }

  // [clock]: a test process never touches the system clock or a drift file.
  lines.push("", "[clock]");
  emit("control", wide ? rand() < 0.5 : false);
  emit("driftfile", "");
  if (rand() < 0.3) {
    const [v, ok] = choose([[0, true], [7, true], [16, false]]);
    emit("orphan_stratum", v);
    if (!ok) err("clock.orphan_stratum");
  }

  // [status]
  lines.push("", "[status]");
  const [status, sok] = choose([
    ["", true],
    [`127.0.0.1:${ports.status}`, true],
    [`[::1]:${ports.status}`, true],
    ["127.0.0.1:0", false],
    ["localhost:8123", false],
    ["[::1]", false],
    ["127.0.0.1:65536", false],
  ]);
  emit("listen", status);
  if (!sok) err("status.listen");

  // (A run is ready when it logs "Serving NTP on" at level info: keep that level there.)
  if (rand() < 0.2 && wide) {
    lines.push("", "[log]");
    const [v, ok] = choose([["debug", true], ["warning", true], ["verbose", false]]);
    emit("level", v);
    if (!ok) err("log.level");
  }

  // [[source]]: valid, invalid, and duplicates of earlier valid ones.
  const pool = validSources(ports.upstream);
  const seen = new Map<string, number>();
  const n = Math.floor(rand() * 5);
  let upstreamSources = 0;
  // In a run, the first source is the scripted upstream, so the engine's first sends can be seen.
  const first = wide ? -1 : 0;
  for (let i = 0; i < n + (wide ? 0 : 1); i++) {
    lines.push("", "[[source]]");
    let address: string;
    let id: string | null = null;
    const invalid = bad(0.3);
    const duplicate = seen.size > 0 && bad(0.3);
    if (i === first) {
      address = pool[0]!.forms[0]!;
      id = pool[0]!.id;
    } else if (invalid) {
      address = pick(rand, BAD_SOURCES);
      err(`source[${i}].address`);
    } else if (duplicate) {
      // A duplicate: an earlier valid source in another written form.
      id = pick(rand, [...seen.keys()]);
      address = pick(rand, pool.find((s) => s.id === id)!.forms);
    } else {
      const s = pick(rand, clean ? pool.filter((s) => !seen.has(s.id)) : pool);
      id = s.id;
      address = pick(rand, s.forms);
    }
    if (id !== null) {
      if (seen.has(id)) err(`source[${i}].address`);
      else {
        seen.set(id, i);
        if (pool.find((s) => s.id === id)?.upstream) upstreamSources++;
      }
    }
    emit("address", address);
    emit("kind", pick(rand, ["server", "pool", "peer"]));
    emit("iburst", i === first ? true : rand() < 0.7);
    if (rand() < 0.3) {
      const min = Math.floor(rand() * (wide && !clean ? 19 : 7));
      const max = clean ? min + Math.floor(rand() * 5) : Math.floor(rand() * (wide ? 19 : 11));
      emit("min_poll", min);
      emit("max_poll", max);
      if (min > 17) err(`source[${i}].min_poll`);
      if (max > 17) err(`source[${i}].max_poll`);
      if (min <= 17 && max <= 17 && max < min) err(`source[${i}].max_poll`);
    }
  }
  return { text: lines.join("\n") + "\n", expected, listen: valid, upstreamSources };
}

function toml(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(toml).join(", ")}]`;
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}
