import assert from "node:assert/strict";
import { exitPrefix, LabChannelParser, newMarker, startLine } from "../../lab/console_protocol.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function feed(parser: LabChannelParser, stream: string, chunkSize: number): string {
  const bytes = enc.encode(stream);
  let out = "";
  for (let at = 0; at < bytes.length; at += chunkSize) {
    out += dec.decode(parser.push(bytes.subarray(at, at + chunkSize)), { stream: true });
  }
  return out;
}

Deno.test("lab channel returns exactly the bytes between the start and exit lines", () => {
  const m = newMarker();
  const body = "line 1\nno newline at the end";
  const stream = `noise ${m.slice(0, 5)}\r\n${startLine(m)}${body}${
    exitPrefix(m)
  }42\ntrailing junk`;
  for (const size of [1, 2, 3, 7, 64, 10_000]) {
    const p = new LabChannelParser(m);
    assert.equal(feed(p, stream, size), body, `chunk size ${size}`);
    assert.equal(p.status, 42);
    assert.equal(p.state, "done");
  }
});

Deno.test("lab channel holds back only a possible partial marker", () => {
  const m = newMarker();
  const p = new LabChannelParser(m);
  assert.equal(dec.decode(p.push(enc.encode(startLine(m) + "abc"))), "abc");
  assert.equal(p.state, "running");
  // Something that looks like the start of the exit prefix is held back...
  assert.equal(dec.decode(p.push(enc.encode("x" + m.slice(0, 4)))), "x");
  // ...and released when it turns out not to be the marker.
  assert.equal(dec.decode(p.push(enc.encode("Z"))), m.slice(0, 4) + "Z");
  assert.equal(dec.decode(p.push(enc.encode(`${exitPrefix(m)}0\n`))), "");
  assert.equal(p.status, 0);
});

Deno.test("lab channel ignores another run's marker and reports no status before the exit line", () => {
  const m = newMarker();
  const other = newMarker();
  assert.notEqual(m, other);
  const p = new LabChannelParser(m);
  const out = feed(p, `${startLine(m)}${exitPrefix(other)}1\nstill running`, 5);
  assert.equal(out, `${exitPrefix(other)}1\nstill running`);
  assert.equal(p.status, undefined);
  assert.equal(p.state, "running");
});

Deno.test("lab channel rejects a malformed status", () => {
  const m = newMarker();
  const p = new LabChannelParser(m);
  assert.throws(() => p.push(enc.encode(`${startLine(m)}${exitPrefix(m)}x1\n`)), /malformed/);
});
