import assert from "node:assert/strict";
import { CpioError, CpioWriter, readCpio } from "../../guest/cpio.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function sample(): Uint8Array {
  return new CpioWriter()
    .file("/bin/hello", "#!/bin/sh\necho hi\n", 0o755)
    .file("etc/empty", new Uint8Array(0))
    .file("etc/odd", "abcde") // 5 bytes: data needs padding
    .symlink("bin/sh", "hello")
    .charDevice("dev/console", 5, 1, 0o600)
    .blockDevice("dev/vda", 254, 0, 0o660)
    .dir("tmp", 0o1777)
    .finish(512);
}

Deno.test("cpio writer pads the archive to the block size and every record to 4 bytes", () => {
  const archive = sample();
  assert.equal(archive.length % 512, 0);
  assert.equal(text(archive.subarray(0, 6)), "070701");
  // Every header (and so every record) starts at a multiple of 4.
  const s = text(archive);
  const starts: number[] = [];
  for (let at = s.indexOf("070701"); at >= 0; at = s.indexOf("070701", at + 1)) starts.push(at);
  assert.equal(starts.length, 11); // 10 entries and the trailer
  for (const at of starts) assert.equal(at % 4, 0, `header at ${at}`);
  assert.ok(s.includes("TRAILER!!!"));
});

Deno.test("cpio writer creates parent directories before their contents", () => {
  const records = readCpio(sample());
  const paths = records.map((r) => r.path);
  assert.deepEqual(paths, [
    "bin",
    "bin/hello",
    "etc",
    "etc/empty",
    "etc/odd",
    "bin/sh",
    "dev",
    "dev/console",
    "dev/vda",
    "tmp",
  ]);
  assert.equal(records[0].kind, "dir");
  assert.equal(records[0].perm, 0o755);
});

Deno.test("cpio round trip keeps kinds, modes, data, symlink targets and device numbers", () => {
  const byPath = new Map(readCpio(sample()).map((r) => [r.path, r]));
  const hello = byPath.get("bin/hello")!;
  assert.equal(hello.kind, "file");
  assert.equal(hello.perm, 0o755);
  assert.equal(text(hello.data), "#!/bin/sh\necho hi\n");
  assert.equal(text(byPath.get("etc/odd")!.data), "abcde");
  assert.equal(byPath.get("etc/empty")!.data.length, 0);
  const sh = byPath.get("bin/sh")!;
  assert.equal(sh.kind, "symlink");
  assert.equal(text(sh.data), "hello");
  const con = byPath.get("dev/console")!;
  assert.deepEqual([con.kind, con.rdevMajor, con.rdevMinor, con.perm], ["char", 5, 1, 0o600]);
  const vda = byPath.get("dev/vda")!;
  assert.deepEqual([vda.kind, vda.rdevMajor, vda.rdevMinor], ["block", 254, 0]);
  assert.equal(byPath.get("tmp")!.perm, 0o1777);
});

Deno.test("cpio output is deterministic for the same input", () => {
  assert.deepEqual(sample(), sample());
});

Deno.test("cpio reader handles concatenated archives", () => {
  const a = new CpioWriter().file("a", "1").finish();
  const b = new CpioWriter().file("b", "22").finish(512);
  const both = new Uint8Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  assert.deepEqual(readCpio(both).map((r) => r.path), ["a", "b"]);
});

Deno.test("cpio writer rejects duplicates, '..' and use after finish", () => {
  const w = new CpioWriter().file("x", "1");
  assert.throws(() => w.file("/x", "2"), CpioError);
  assert.throws(() => w.file("a/../b", "2"), CpioError);
  assert.throws(() => w.symlink("l", ""), CpioError);
  w.dir("x2").dir("x2"); // an existing directory is fine
  w.finish();
  assert.throws(() => w.file("y", "1"), CpioError);
});

Deno.test("cpio reader rejects bad magic and truncation", () => {
  const archive = new CpioWriter().file("f", "data").finish();
  const bad = archive.slice();
  bad[0] = "1".charCodeAt(0);
  assert.throws(() => readCpio(bad), /bad magic/);
  assert.throws(() => readCpio(archive.subarray(0, 50)), /truncated/);
  assert.throws(() => readCpio(archive.subarray(0, 115)), /past the end/);
});

Deno.test("cpio(1) lists and extracts the archive", async () => {
  const cpio = await which("cpio");
  if (!cpio) {
    console.warn("cpio(1) not installed: skipping the round trip through it");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "cpio_test_" });
  try {
    const archivePath = `${dir}/a.cpio`;
    await Deno.writeFile(archivePath, sample());
    const list = await new Deno.Command(cpio, {
      args: ["-t", "-F", archivePath],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(list.code, 0, text(list.stderr));
    assert.deepEqual(text(list.stdout).trim().split("\n"), [
      "bin",
      "bin/hello",
      "etc",
      "etc/empty",
      "etc/odd",
      "bin/sh",
      "dev",
      "dev/console",
      "dev/vda",
      "tmp",
    ]);
    // Extract without device nodes (mknod may be refused) and compare.
    const onlyFiles = new CpioWriter()
      .file("bin/hello", "#!/bin/sh\necho hi\n", 0o755)
      .file("etc/odd", "abcde", 0o640)
      .symlink("bin/sh", "hello")
      .finish();
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    await Deno.writeFile(`${dir}/b.cpio`, onlyFiles);
    const ex = await new Deno.Command(cpio, {
      args: ["-i", "-d", "-F", `${dir}/b.cpio`],
      cwd: out,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(ex.code, 0, text(ex.stderr));
    assert.equal(await Deno.readTextFile(`${out}/bin/hello`), "#!/bin/sh\necho hi\n");
    assert.equal((await Deno.stat(`${out}/bin/hello`)).mode! & 0o777, 0o755);
    assert.equal((await Deno.stat(`${out}/etc/odd`)).mode! & 0o777, 0o640);
    assert.equal(await Deno.readLink(`${out}/bin/sh`), "hello");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const path = `${dir}/${name}`;
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
