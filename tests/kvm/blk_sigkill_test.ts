/**
 * virtio-blk keeps what the guest synced when the VMM dies (issue 5): the
 * `dvmm run` CLI boots the default guest with `--disk` on an ext2 image made
 * on the host; the guest mounts it, writes a 384 KiB file whose every byte
 * the host can predict, runs `sync` and prints a marker. The moment the
 * marker reaches the host, the dvmm process gets SIGKILL: no shutdown, no
 * device close, no chance to write anything more. The host then reads the
 * file out of the image with debugfs (exactly the bytes the guest wrote) and
 * checks the file system with `e2fsck -fn` (consistent, only "not clean":
 * it was still mounted).
 *
 * What this proves about dvmm: a request reaches the used ring only after
 * its pwritev returned (data the guest's sync waited for is in the host
 * kernel, which keeps it when the process dies), and FLUSH, which the guest
 * must have sent during the sync (its count in /sys/block/vda/stat is
 * checked), completes only after the writes before it. A SIGKILL leaves the
 * host page cache alone, so this test cannot tell an fdatasync from none:
 * that only matters if the host itself crashes.
 */
import { ok, strictEqual } from "node:assert/strict";
import { createHash } from "node:crypto";
import { ConsoleTimeoutError, GuestConsole } from "../../vmm/guest_console.ts";
import { GUEST_INIT_MARKER } from "../../guest/initramfs.ts";
import { SHELL_PROMPT } from "../../vmm/demo.ts";
import { checkExt2, makeExt2Image, readExt2File } from "./ext2_image.ts";

const main = new URL("../../main.ts", import.meta.url).pathname;

/** Lines `00000` to `65535` (what busybox `seq -w 0 65535` prints): 393,216 bytes. */
const LINES = 65536;
const expected = Array.from({ length: LINES }, (_, i) => `${String(i).padStart(5, "0")}\n`)
  .join("");

/** Where two texts first differ, for a readable failure on a 384 KiB file. */
function firstDifference(got: string, want: string): string {
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  return `${got.length} bytes instead of ${want.length}, first difference at byte ${i}: ` +
    `${JSON.stringify(got.slice(i, i + 24))} instead of ${JSON.stringify(want.slice(i, i + 24))}`;
}

/** Feed everything `stdout` carries to `console`. */
async function pump(stdout: ReadableStream<Uint8Array>, console: GuestConsole): Promise<void> {
  for await (const chunk of stdout) console.feed(chunk);
}

/** A `dvmm run` child process whose serial console is a {@linkcode GuestConsole}. */
class CliGuest {
  readonly console: GuestConsole;
  readonly child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;
  readonly #pumped: Promise<void>;

  constructor(flags: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--cached-only", main, "run", ...flags],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.child.stdin.getWriter();
    this.console = new GuestConsole((bytes) => {
      this.#stdin.write(bytes.slice()).catch(() => {}); // queued in order; fails once it is dead
      return bytes.length;
    });
    this.#stderr = new Response(this.child.stderr).text();
    this.#pumped = pump(this.child.stdout, this.console);
  }

  /** `step`, or an error with dvmm's output if dvmm ends first. */
  async expect<T>(step: Promise<T>): Promise<T> {
    step.catch(() => {}); // a step left behind by dvmm's end times out later, unheard
    const ended = this.child.status.then(async (s) => {
      throw new Error(
        `dvmm ended (${s.signal ?? `status ${s.code}`}); stderr:\n${await this.#stderr}` +
          `\nconsole:\n${this.console.output.slice(-2000)}`,
      );
    });
    try {
      return await Promise.race([step, ended]);
    } catch (e) {
      if (!(e instanceof ConsoleTimeoutError)) throw e;
      // A stuck guest: dvmm prints its stall report on SIGUSR1; end it and add what it said.
      try {
        this.child.kill("SIGUSR1");
      } catch { /* already gone */ }
      await new Promise((r) => setTimeout(r, 1500));
      await this.close();
      throw new Error(`${e.message}\ndvmm's stderr:\n${await this.#stderr}`, { cause: e });
    }
  }

  /** Kill dvmm if it still runs and collect its output. */
  async close(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.child.status;
    await this.#pumped.catch(() => {});
    await this.#stderr.catch(() => "");
    await this.#stdin.close().catch(() => {});
  }
}

Deno.test("virtio-blk: a file the guest synced is in the image, intact, after dvmm is SIGKILLed right after the sync", async () => {
  const { dir, image } = await makeExt2Image({ "from_host.txt": "made by mke2fs -d\n" }, "16M");
  const vm = new CliGuest([
    ...["--no-api", "--mem", "256M", "--cpus", "1", "--cmdline", "quiet", "--disk", image],
  ]);
  try {
    const { console } = vm;
    await vm.expect(console.waitFor(GUEST_INIT_MARKER, 180_000));
    await vm.expect(console.waitFor(SHELL_PROMPT, 60_000));
    await vm.expect(console.run("dvmm-load-modules 2>/dev/null", 120_000));
    const mounted = await vm.expect(console.run(
      "i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do usleep 50000; i=$((i + 1)); done; " +
        "mount -t ext2 /dev/vda /mnt && cat /mnt/from_host.txt && " +
        "set -- $(cat /sys/block/vda/stat) && echo flushes=${16}",
      60_000,
    ));
    strictEqual(mounted.status, 0, mounted.output);
    ok(mounted.output.startsWith("made by mke2fs -d\n"), mounted.output);
    const flushesBefore = Number(/flushes=(\d+)/.exec(mounted.output)![1]);

    // The marker is printed only once sync has returned; the echoed command line has
    // "dvmm-blk synced" (a space), only the output has "dvmm-blk-synced".
    const synced = console.waitFor(/dvmm-blk-synced flushes=(\d+)\r?\n/, 120_000);
    await console.write(
      `seq -w 0 ${LINES - 1} > /mnt/blob.txt && md5sum /mnt/blob.txt && sync && ` +
        "set -- $(cat /sys/block/vda/stat) && printf '%s-%s flushes=%s\\n' dvmm-blk synced ${16}\n",
    );
    const text = await vm.expect(synced);
    vm.child.kill("SIGKILL");
    const status = await vm.child.status;
    strictEqual(status.signal, "SIGKILL", `dvmm ended on its own: status ${status.code}`);

    const wantMd5 = createHash("md5").update(expected).digest("hex");
    ok(text.includes(`${wantMd5}  /mnt/blob.txt`), `the guest wrote other content:\n${text}`);
    const flushesAfter = Number(/dvmm-blk-synced flushes=(\d+)/.exec(text)![1]);
    ok(
      flushesAfter > flushesBefore,
      `the guest's sync sent no FLUSH (${flushesBefore} -> ${flushesAfter})`,
    );

    const got = await readExt2File(image, "/blob.txt");
    ok(got === expected, `/blob.txt in the image: ${firstDifference(got, expected)}`);
    const fsck = await checkExt2(image);
    globalThis.console.log(
      `blk sigkill: ${flushesAfter - flushesBefore} flush(es) during sync; e2fsck: ${
        fsck.trim().split("\n").at(-1)
      }`,
    );
  } finally {
    await vm.close();
    await Deno.remove(dir, { recursive: true });
  }
});
