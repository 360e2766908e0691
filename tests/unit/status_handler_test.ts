/**
 * The status handler, called with a Request and no socket: every path,
 * method and format; /status against the JSON schema in the repo;
 * /metrics through a strict parser of the Prometheus text format.
 */
import assert from "assert";
import { handleStatusRequest } from "../../lib/status/handler.ts";
import { parsePrometheusText, type PromFamily } from "../helpers/prom_text.ts";
import { validate } from "../helpers/json_schema.ts";
import { fakeAnycast, fakeCounters, fakeEngine, fakeModel, T0 } from "../helpers/status_fixture.ts";

const schema = JSON.parse(
  await Deno.readTextFile(new URL("../../lib/status/status.schema.json", import.meta.url)),
);

const get = (path: string, method = "GET") =>
  new Request(`http://127.0.0.1:8123${path}`, { method });

function family(fams: PromFamily[], name: string): PromFamily {
  const f = fams.find((f) => f.name === name);
  assert.ok(f, `metric family ${name} missing`);
  return f;
}

Deno.test("handleStatusRequest() GET /status answers JSON that matches the schema", async (t) => {
  await t.step("with sources, rates and anycast", async () => {
    const { model, state } = fakeModel({ anycast: fakeAnycast(false) });
    model.sample();
    state.now += 16;
    state.counters = fakeCounters(2);
    const res = handleStatusRequest(get("/status"), model);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    const doc = await res.json();
    assert.deepEqual(validate(schema, doc), []);
    assert.equal(doc.sources.length, 3);
    assert.equal(doc.system.root_delay_s, 0.0012);
    assert.equal(doc.server_rates.window_s, 16);
    assert.equal(doc.server_rates.received_per_s, 1000 / 16);
    assert.equal(doc.anycast.state, "withdrawn");
    assert.equal(doc.health.healthy, false);
    assert.equal(doc.time, T0 + 16);
    // Optional report fields pass through when the engine and anycast give them.
    assert.equal(doc.engine_counters.clock_updates, 42);
    assert.equal(doc.sources[2].state, "denied");
    assert.equal(doc.anycast.transitions[0].subject, "gate");
  });
  await t.step("without anycast and before any sample", async () => {
    const { model } = fakeModel();
    const doc = await handleStatusRequest(get("/status?format=json"), model).json();
    assert.deepEqual(validate(schema, doc), []);
    assert.equal(doc.anycast, null);
    assert.equal(doc.server_rates, null);
  });
  await t.step(
    "the schema rejects a renamed or missing field (the validator is not a no-op)",
    async () => {
      const { model } = fakeModel();
      const doc = await handleStatusRequest(get("/status"), model).json();
      doc.system.root_delay_ms = doc.system.root_delay_s;
      delete doc.system.root_delay_s;
      doc.sources[0].reach = 400;
      const errors = validate(schema, doc);
      assert.ok(
        errors.some((e) => e.includes('unexpected property "root_delay_ms"')),
        errors.join(),
      );
      assert.ok(errors.some((e) => e.includes('missing required "root_delay_s"')), errors.join());
      assert.ok(errors.some((e) => e.includes("sources[0].reach")), errors.join());
    },
  );
});

Deno.test("handleStatusRequest() GET /status?format=text gives aligned text", async (t) => {
  const { model } = fakeModel({ anycast: fakeAnycast(true) });
  const res = handleStatusRequest(get("/status?format=text"), model);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/plain/);
  const text = await res.text();
  await t.step("has every section", () => {
    for (const h of ["Tracking", "Sources", "Server", "Anycast", "Process"]) {
      assert.match(text, new RegExp(`^${h}$`, "m"));
    }
    assert.match(text, /^Health: OK$/m);
  });
  await t.step("tracking values are aligned in one column", () => {
    const cols = text.split("\n").filter((l) => / : /.test(l)).map((l) => l.indexOf(" : "));
    assert.ok(cols.length >= 12);
    assert.equal(new Set(cols).size, 1);
  });
  await t.step("peer rows have the ntpq columns", () => {
    assert.match(
      text,
      /^\*192\.0\.2\.1\s+\.GPS\.\s+1 u\s+12\s+64\s+377\s+1\.230\s+0\.012\s+0\.004$/m,
    );
    assert.match(text, /^x2001:db8::7b\s+LOCL\s+5 s\s+-\s+16\s+0\s/m);
  });
  await t.step("an unknown format is a 400 naming it", async () => {
    const r = handleStatusRequest(get("/status?format=xml"), model);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /Unknown format "xml"/);
  });
});

Deno.test("handleStatusRequest() GET /metrics is valid Prometheus text", async (t) => {
  const { model, state } = fakeModel({ anycast: fakeAnycast(true) });
  state.engine.sources[1]!.address = 'odd"name\\x';
  const res = handleStatusRequest(get("/metrics"), model);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const fams = parsePrometheusText(await res.text());
  await t.step("server outcomes are labelled counters that sum to received", () => {
    const received = family(fams, "ntp_server_received_packets_total");
    assert.equal(received.type, "counter");
    const outcomes = family(fams, "ntp_server_processed_packets_total");
    assert.equal(outcomes.type, "counter");
    assert.equal(outcomes.samples.reduce((a, s) => a + s.value, 0), received.samples[0]!.value);
    assert.equal(
      outcomes.samples.find((s) => s.labels.outcome === "kod_rate")?.value,
      10,
    );
  });
  await t.step("system gauges carry units in their names", () => {
    assert.equal(family(fams, "ntp_system_offset_seconds").samples[0]!.value, 12e-6);
    assert.equal(family(fams, "ntp_system_root_delay_seconds").samples[0]!.value, 0.0012);
    assert.equal(family(fams, "ntp_system_frequency_ppm").samples[0]!.value, -3.25);
    assert.equal(family(fams, "ntp_system_stratum").samples[0]!.value, 2);
  });
  await t.step("per-source gauges are labelled by address, escapes round-trip", () => {
    const off = family(fams, "ntp_source_offset_seconds");
    assert.deepEqual(off.samples.map((s) => s.labels.address), [
      "192.0.2.1",
      'odd"name\\x',
      "2001:db8::7b",
    ]);
    assert.equal(family(fams, "ntp_source_reach").samples[0]!.value, 255);
    assert.equal(family(fams, "ntp_source_poll_seconds").samples[0]!.value, 64);
    assert.deepEqual(
      family(fams, "ntp_source_selected").samples.map((s) => s.value),
      [1, 0, 0],
    );
  });
  await t.step("engine and per-source event counters", () => {
    const ev = family(fams, "ntp_engine_events_total");
    assert.equal(ev.type, "counter");
    assert.equal(ev.samples.find((x) => x.labels.event === "clock_updates")?.value, 42);
    const src = family(fams, "ntp_source_events_total");
    assert.deepEqual(src.samples, [{
      name: "ntp_source_events_total",
      labels: { address: "2001:db8::7b", event: "kod_deny" },
      value: 1,
    }]);
  });
  await t.step("anycast and process families", () => {
    assert.equal(family(fams, "anycast_enabled").samples[0]!.value, 1);
    assert.equal(family(fams, "anycast_healthy").samples[0]!.value, 1);
    assert.equal(family(fams, "anycast_announced_addresses").samples[0]!.value, 1);
    assert.equal(family(fams, "process_resident_memory_bytes").samples[0]!.value, 50 * 2 ** 20);
  });
  await t.step("without anycast only anycast_enabled 0 is exported", async () => {
    const { model } = fakeModel();
    const f = parsePrometheusText(await handleStatusRequest(get("/metrics"), model).text());
    assert.equal(family(f, "anycast_enabled").samples[0]!.value, 0);
    assert.equal(f.find((x) => x.name === "anycast_healthy"), undefined);
  });
  await t.step("the parser rejects what the format forbids", () => {
    assert.throws(() => parsePrometheusText("x_total 1\n"), /outside its family/);
    assert.throws(
      () => parsePrometheusText("# HELP a_b c\n# TYPE a_b counter\na_b 1\n"),
      /does not end in _total/,
    );
    assert.throws(
      () => parsePrometheusText('# HELP a h\n# TYPE a gauge\na{l="\\x"} 1\n'),
      /bad escape/,
    );
    assert.throws(
      () => parsePrometheusText("# HELP a h\n# TYPE a gauge\na 1\na 2\n"),
      /duplicate series/,
    );
  });
});

Deno.test("handleStatusRequest() GET /healthz follows the anycast gate, else sync state", async (t) => {
  await t.step("synchronised, no anycast: 200 ok", async () => {
    const r = handleStatusRequest(get("/healthz"), fakeModel().model);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "ok\n");
  });
  await t.step("unsynchronised, no anycast: 503 with the reason", async () => {
    const { model } = fakeModel({ engine: fakeEngine({ synchronised: false, stratum: 16 }) });
    const r = handleStatusRequest(get("/healthz"), model);
    assert.equal(r.status, 503);
    assert.equal(await r.text(), "unhealthy: not synchronised\n");
  });
  await t.step("anycast gate unhealthy wins over a synchronised clock", async () => {
    const { model } = fakeModel({ anycast: fakeAnycast(false) });
    const r = handleStatusRequest(get("/healthz"), model);
    assert.equal(r.status, 503);
    assert.match(await r.text(), /anycast node unhealthy: offset 0\.2 s exceeds 0\.1 s/);
  });
  await t.step("anycast gate healthy wins over an unsynchronised clock", () => {
    const { model } = fakeModel({
      engine: fakeEngine({ synchronised: false }),
      anycast: fakeAnycast(true),
    });
    assert.equal(handleStatusRequest(get("/healthz"), model).status, 200);
  });
});

Deno.test("handleStatusRequest() GET / is one self-contained page", async (t) => {
  const { model, state } = fakeModel({ anycast: fakeAnycast(false) });
  // An hour of samples a minute apart fill 15 adjacent 4-minute chart buckets: lines, not dots.
  for (let i = 0; i < 60; i++) {
    model.sample();
    state.now += 60;
  }
  const res = handleStatusRequest(get("/"), model);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/html/);
  assert.match(res.headers.get("content-security-policy")!, /default-src 'none'/);
  const html = await res.text();
  await t.step("no scripts, no external assets", () => {
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /<link/i);
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i);
    assert.doesNotMatch(html, /url\(/i);
  });
  await t.step("viewport for phones", () => {
    assert.match(html, /<meta name="viewport" content="width=device-width,initial-scale=1">/);
  });
  await t.step("health banner, tracking, sources, legend, chart, server, anycast", () => {
    assert.match(html, /class="banner bad" id="health">Unhealthy — anycast node unhealthy/);
    assert.match(html, /<table id="sources">/);
    assert.equal((html.match(/<tr( class="sys")?><td class="tally">/g) ?? []).length, 3);
    assert.match(html, /<code>x<\/code> falseticker/);
    assert.match(html, /<svg id="history-chart"/);
    assert.match(html, /<polyline /);
    assert.match(html, /ntp-b\.example\.net/);
    assert.match(html, /<table id="server">/);
    assert.match(html, /announced<\/td><td class="l">withdrawn/);
  });
  await t.step("text from reports is escaped", () => {
    assert.match(html, /offset &#34;0\.2 s&#34; &#60;high&#62;/);
    assert.doesNotMatch(html, /<high>/);
  });
});

Deno.test("handleStatusRequest() refuses other methods and unknown paths", async (t) => {
  const { model } = fakeModel();
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    await t.step(`${method} is 405 with Allow`, async () => {
      const r = handleStatusRequest(get("/status", method), model);
      assert.equal(r.status, 405);
      assert.equal(r.headers.get("allow"), "GET, HEAD");
      assert.match(await r.text(), new RegExp(`Method ${method} not allowed`));
    });
  }
  for (const path of ["/nope", "/status/", "/metrics.json", "/favicon.ico"]) {
    await t.step(`GET ${path} is 404`, () => {
      assert.equal(handleStatusRequest(get(path), model).status, 404);
    });
  }
  await t.step("HEAD has the headers of GET and no body", async () => {
    const g = handleStatusRequest(get("/metrics"), model);
    const h = handleStatusRequest(get("/metrics", "HEAD"), model);
    assert.equal(h.status, 200);
    assert.equal(h.body, null);
    assert.equal(h.headers.get("content-length"), String((await g.arrayBuffer()).byteLength));
  });
  await t.step("a failing report gives a one-line 500, not a throw", async () => {
    const { model } = fakeModel({}, { throwIn: "engine" });
    const r = handleStatusRequest(get("/status"), model);
    assert.equal(r.status, 500);
    assert.equal(await r.text(), "Cannot render /status: engine report unavailable\n");
  });
});
