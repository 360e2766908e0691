import assert from "assert";
import { mulberry32 } from "../helpers/config_gen.ts";
import {
  clientRequest,
  COOKIES_PER_KE,
  exporterContext,
  negotiateServer,
  readServerResponse,
  serverResponse,
} from "../../lib/nts/ke_negotiate.ts";
import {
  answerRequest,
  certificateNotice,
  keAccess,
  type KeServerOptions,
} from "../../lib/nts/ke_server.ts";
import {
  AEAD_AES_128_GCM_SIV as GCM,
  AEAD_AES_SIV_CMAC_256 as SIV,
  decodeMessage,
  encodeRecords,
  ErrorCode,
  type KeRecord,
  rec,
  RecordType,
} from "../../lib/nts/ke_records.ts";

const BOTH = [SIV, GCM];

Deno.test("negotiateServer() follows the client's order of preference", async (t) => {
  await t.step("client prefers GCM-SIV, both supported", () => {
    assert.deepEqual(negotiateServer(clientRequest([GCM, SIV]), BOTH), { kind: "ok", aeadId: GCM });
  });
  await t.step("client prefers SIV-CMAC, both supported", () => {
    assert.deepEqual(negotiateServer(clientRequest([SIV, GCM]), BOTH), { kind: "ok", aeadId: SIV });
  });
  await t.step("client offers GCM-SIV first but the server lacks it", () => {
    assert.deepEqual(negotiateServer(clientRequest([GCM, SIV]), [SIV]), {
      kind: "ok",
      aeadId: SIV,
    });
  });
  await t.step("unknown AEADs are skipped", () => {
    assert.deepEqual(negotiateServer(clientRequest([16, 17, SIV]), BOTH), {
      kind: "ok",
      aeadId: SIV,
    });
  });
  await t.step("nothing in common: no-aead", () => {
    assert.deepEqual(negotiateServer(clientRequest([16]), BOTH), { kind: "no-aead" });
  });
});

Deno.test("negotiateServer() answers bad request and unrecognized critical record", async (t) => {
  const eom = rec.endOfMessage();
  const code = (records: KeRecord[]) => {
    const d = negotiateServer(records, BOTH);
    return d.kind === "error" ? d.code : d.kind;
  };
  await t.step("unknown critical record is error 0", () => {
    assert.equal(
      code([rec.nextProtocol([0]), rec.aead([SIV]), {
        critical: true,
        type: 1234,
        body: new Uint8Array(2),
      }, eom]),
      ErrorCode.UNRECOGNIZED_CRITICAL_RECORD,
    );
  });
  await t.step("unknown non-critical record is ignored", () => {
    assert.equal(
      code([
        rec.nextProtocol([0]),
        { critical: false, type: 1234, body: new Uint8Array(2) },
        rec.aead([SIV]),
        eom,
      ]),
      "ok",
    );
  });
  await t.step("NTPv4 without an AEAD record is a bad request", () => {
    assert.equal(code([rec.nextProtocol([0]), eom]), ErrorCode.BAD_REQUEST);
  });
  await t.step("two AEAD records", () => {
    assert.equal(
      code([rec.nextProtocol([0]), rec.aead([SIV]), rec.aead([SIV]), eom]),
      ErrorCode.BAD_REQUEST,
    );
  });
  await t.step("empty AEAD record", () => {
    assert.equal(code([rec.nextProtocol([0]), rec.aead([]), eom]), ErrorCode.BAD_REQUEST);
  });
  await t.step("no Next Protocol record", () => {
    assert.equal(code([rec.aead([SIV]), eom]), ErrorCode.BAD_REQUEST);
  });
  await t.step("two Next Protocol records", () => {
    assert.equal(
      code([rec.nextProtocol([0]), rec.nextProtocol([0]), rec.aead([SIV]), eom]),
      ErrorCode.BAD_REQUEST,
    );
  });
  await t.step("Next Protocol not critical", () => {
    assert.equal(
      code([{ ...rec.nextProtocol([0]), critical: false }, rec.aead([SIV]), eom]),
      ErrorCode.BAD_REQUEST,
    );
  });
  await t.step("odd Next Protocol body", () => {
    assert.equal(
      code([{ critical: true, type: 1, body: new Uint8Array(3) }, rec.aead([SIV]), eom]),
      ErrorCode.BAD_REQUEST,
    );
  });
  for (const r of [rec.error(0), rec.warning(0), rec.cookie(new Uint8Array(8))]) {
    await t.step(`record type ${r.type} in a request`, () => {
      assert.equal(code([rec.nextProtocol([0]), rec.aead([SIV]), r, eom]), ErrorCode.BAD_REQUEST);
    });
  }
  await t.step("protocol other than NTPv4: empty Next Protocol answer", () => {
    assert.equal(code([rec.nextProtocol([0x8000]), eom]), "no-protocol");
  });
  await t.step("client Server/Port wishes are accepted and ignored", () => {
    assert.equal(
      code([rec.nextProtocol([0]), rec.aead([SIV]), rec.server("x"), rec.port(5), eom]),
      "ok",
    );
  });
});

Deno.test("serverResponse() builds each kind of answer", () => {
  const types = (rs: KeRecord[]) => rs.map((r) => `${r.type}:${r.body.length}`).join(" ");
  assert.equal(types(serverResponse({ kind: "error", code: 1, reason: "" })), "2:2 0:0");
  assert.equal(types(serverResponse({ kind: "no-protocol" })), "1:0 0:0");
  assert.equal(types(serverResponse({ kind: "no-aead" })), "1:2 4:0 0:0");
  const cookies = [new Uint8Array(100), new Uint8Array(100)];
  assert.equal(
    types(
      serverResponse({ kind: "ok", aeadId: SIV }, { cookies, ntpServer: "ntp.x", ntpPort: 1123 }),
    ),
    "1:2 4:2 6:5 7:2 5:100 5:100 0:0",
  );
  // Port 123 and no server name: no negotiation records.
  assert.equal(
    types(serverResponse({ kind: "ok", aeadId: SIV }, { cookies, ntpPort: 123 })),
    "1:2 4:2 5:100 5:100 0:0",
  );
});

Deno.test("readServerResponse() takes keys and cookies, refuses what RFC 8915 §4.1 refuses", async (t) => {
  const ok = serverResponse({ kind: "ok", aeadId: SIV }, {
    cookies: [new Uint8Array([1]), new Uint8Array([2])],
    ntpServer: "10.0.0.1",
    ntpPort: 1123,
  });
  await t.step("a full answer", () => {
    const r = readServerResponse(ok, [GCM, SIV]);
    assert.ok(r.ok);
    if (!r.ok) return;
    assert.equal(r.aeadId, SIV);
    assert.equal(r.cookies.length, 2);
    assert.equal(r.ntpServer, "10.0.0.1");
    assert.equal(r.ntpPort, 1123);
  });
  const reason = (rs: KeRecord[], offered = [SIV]) => {
    const r = readServerResponse(rs, offered);
    return r.ok ? "ok" : r.reason;
  };
  await t.step("Error record", () => {
    assert.match(
      reason(serverResponse({ kind: "error", code: 1, reason: "" })),
      /Error 1 \(bad request\)/,
    );
  });
  await t.step("no protocol", () => {
    assert.match(reason(serverResponse({ kind: "no-protocol" })), /does not support NTPv4/);
  });
  await t.step("no AEAD in common", () => {
    assert.match(reason(serverResponse({ kind: "no-aead" })), /none of the AEADs offered/);
  });
  await t.step("an AEAD not offered", () => {
    assert.match(reason(ok, [GCM]), /did not offer/);
  });
  await t.step("no cookies", () => {
    assert.match(
      reason(serverResponse({ kind: "ok", aeadId: SIV }, { cookies: [] })),
      /no cookies/,
    );
  });
  await t.step("unknown critical record", () => {
    assert.match(
      reason([{ critical: true, type: 999, body: new Uint8Array(0) }, ...ok]),
      /unrecognized critical record 999/,
    );
  });
  await t.step("unknown non-critical record and a warning are ignored", () => {
    assert.equal(
      reason([{ critical: false, type: 999, body: new Uint8Array(0) }, rec.warning(3), ...ok]),
      "ok",
    );
  });
  await t.step("malformed port", () => {
    assert.match(
      reason([{ critical: true, type: RecordType.NTPV4_PORT, body: new Uint8Array(3) }, ...ok]),
      /malformed NTPv4 Port/,
    );
  });
});

Deno.test("exporterContext() is protocol ID, AEAD ID, direction (RFC 8915 §5.1)", () => {
  assert.deepEqual(Array.from(exporterContext(15, "c2s")), [0, 0, 0, 15, 0]);
  assert.deepEqual(Array.from(exporterContext(30, "s2c")), [0, 0, 0, 30, 1]);
});

function options(over: Partial<KeServerOptions> = {}): KeServerOptions {
  return {
    supportedAeads: BOTH,
    exportKey: (id, dir, len) => new Uint8Array(len).fill(dir === "c2s" ? id : id + 1),
    makeCookies: (id, c2s, s2c, n) =>
      Array.from({ length: n }, (_, i) => new Uint8Array([id, c2s.length, s2c[0]!, i])),
    ...over,
  };
}

Deno.test("answerRequest() waits for the whole request, then answers with keys and 8 cookies", () => {
  const req = encodeRecords(clientRequest([GCM, SIV]));
  assert.equal(answerRequest(req.subarray(0, req.length - 1), options()).kind, "partial");
  const step = answerRequest(req, options({ ntpPort: 1123 }));
  assert.equal(step.kind, "response");
  if (step.kind !== "response") return;
  assert.deepEqual(step.outcome, { kind: "ok", aeadId: GCM, cookies: COOKIES_PER_KE });
  const m = decodeMessage(step.bytes);
  assert.equal(m.kind, "message");
  if (m.kind !== "message") return;
  const r = readServerResponse(m.records, [GCM, SIV]);
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.equal(r.cookies.length, 8);
  // makeCookies got GCM-SIV keys of 16 bytes, S2C from the exporter's s2c direction.
  assert.deepEqual(Array.from(r.cookies[7]!), [GCM, 16, GCM + 1, 7]);
  assert.equal(r.ntpPort, 1123);
});

Deno.test("answerRequest() turns failures into Error records", async (t) => {
  const errorCode = (bytes: Uint8Array, o = options()) => {
    const s = answerRequest(bytes, o);
    if (s.kind !== "response" || s.outcome.kind !== "error") return null;
    const m = decodeMessage(s.bytes);
    assert.equal(m.kind, "message");
    return s.outcome.code;
  };
  await t.step("cookie maker throws: internal server error", () => {
    const o = options({
      makeCookies: () => {
        throw new Error("no key");
      },
    });
    assert.equal(
      errorCode(encodeRecords(clientRequest([SIV])), o),
      ErrorCode.INTERNAL_SERVER_ERROR,
    );
  });
  await t.step("oversized request: bad request", () => {
    const big = encodeRecords([{ critical: false, type: 50, body: new Uint8Array(40000) }]);
    assert.equal(errorCode(big), ErrorCode.BAD_REQUEST);
  });
  await t.step("unknown critical record: error 0", () => {
    const bytes = encodeRecords([
      rec.nextProtocol([0]),
      { critical: true, type: 77, body: new Uint8Array(0) },
      rec.aead([SIV]),
      rec.endOfMessage(),
    ]);
    assert.equal(errorCode(bytes), ErrorCode.UNRECOGNIZED_CRITICAL_RECORD);
  });
});

Deno.test("certificateNotice() warns once near the end, errors once after it", () => {
  const end = 1_800_000_000, day = 86400;
  assert.equal(certificateNotice("c.pem", end, end - 30 * day, "none"), null);
  const w = certificateNotice("c.pem", end, end - 3.5 * day, "none");
  assert.equal(w?.level, "warning");
  assert.equal(
    w?.message,
    "c.pem: certificate expires in 3 days (2027-01-15T08:00:00Z): renew it and send SIGHUP",
  );
  assert.equal(certificateNotice("c.pem", end, end - 3 * day, "warning"), null);
  const e = certificateNotice("c.pem", end, end + 1, "warning");
  assert.equal(e?.level, "error");
  assert.match(
    e!.message,
    /^c\.pem: certificate expired at 2027-01-15T08:00:00Z; clients refuse it/,
  );
  assert.equal(certificateNotice("c.pem", end, end + day, "error"), null);
  // A certificate loaded already expired is refused before it is used; one past its end says so.
  assert.equal(certificateNotice("c.pem", end, end + day, "none")?.level, "error");
});

Deno.test("answerRequest() never throws on random or mangled input, and every answer decodes", () => {
  const rand = mulberry32(8915);
  const valid = encodeRecords(clientRequest([GCM, SIV]));
  let responses = 0;
  for (let i = 0; i < 3000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      // Random records: random types (a few known ones), critical bits, lengths, bodies; EOM last.
      const records: KeRecord[] = [];
      const n = Math.floor(rand() * 6);
      for (let k = 0; k < n; k++) {
        const type = rand() < 0.6 ? Math.floor(rand() * 8) : Math.floor(rand() * 0x7fff);
        const body = new Uint8Array(Math.floor(rand() * 9)).map(() => Math.floor(rand() * 256));
        records.push({ critical: rand() < 0.5, type: type === 0 ? 1 : type, body });
      }
      bytes = encodeRecords([...records, rec.endOfMessage()]);
    } else {
      // A valid request with a few bytes flipped or cut.
      bytes = valid.slice(0, Math.max(1, Math.floor(rand() * (valid.length + 1))));
      for (let k = 0; k < 3; k++) {
        bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      }
    }
    const step = answerRequest(bytes, options());
    if (step.kind === "partial") continue;
    responses++;
    const m = decodeMessage(step.bytes);
    assert.equal(m.kind, "message");
    if (m.kind !== "message") continue;
    assert.equal(m.records.at(-1)!.type, RecordType.END_OF_MESSAGE);
    if (step.outcome.kind === "ok") {
      assert.ok(readServerResponse(m.records, [GCM, SIV]).ok);
    }
  }
  assert.ok(responses > 1000, `${responses} answered`);
});

Deno.test("keAccess() applies the NTP server's allow/deny rule to key exchange clients", () => {
  const ok = keAccess(["192.0.2.0/24", "2001:db8::/32"], ["192.0.2.128/25"]);
  assert.equal(ok("192.0.2.10"), true);
  assert.equal(ok("192.0.2.200"), false); // the more specific deny
  assert.equal(ok("::ffff:192.0.2.10"), true); // IPv4-mapped, as a dual-stack socket reports it
  assert.equal(ok("198.51.100.1"), false);
  assert.equal(ok("2001:db8::1"), true);
  assert.equal(ok("[2001:db8::1]"), true);
  assert.equal(ok("2001:db9::1"), false);
  assert.equal(ok("not an address"), false);
  const everyone = keAccess(["0.0.0.0/0", "::/0"], []);
  assert.equal(everyone("203.0.113.9"), true);
  assert.equal(everyone("::1"), true);
});
