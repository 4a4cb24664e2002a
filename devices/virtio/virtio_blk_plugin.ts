/**
 * The built-in `virtio-blk` plugin: a raw disk image file as a virtio block
 * device. Options: `path` (required), `readonly` (or `ro`; default false),
 * `serial` (GET_ID answer, default `dvmm`). Requests are served by an I/O
 * worker that waits on the doorbell's eventfd and sends MSIs itself.
 *
 * ```sh
 * dvmm run --device virtio-blk,path=disk.img,ro
 * ```
 *
 * @module
 */

import { z } from "zod";
import { VIRTIO_BLK_CONFIG_SIZE, VirtioBlk } from "./blk.ts";
import { FileBlockBackend } from "./block_file.ts";
import { booleanOption } from "./plugin_options.ts";
import { VIRTIO_ID } from "./spec.ts";
import { defineVirtioPciDevice } from "./virtio_pci_plugin.ts";

/** PCI class of a virtio disk: mass storage, other. */
export const VIRTIO_BLK_CLASS = 0x018000;

/** The `virtio-blk` plugin. */
export default defineVirtioPciDevice({
  name: "virtio-blk",
  description: "virtio block device over a raw image file",
  type: VIRTIO_ID.BLOCK,
  classCode: VIRTIO_BLK_CLASS,
  queues: 1,
  configSize: VIRTIO_BLK_CONFIG_SIZE,
  options: z.object({
    path: z.string().min(1).describe("raw disk image on the host"),
    readonly: booleanOption().optional().describe("refuse guest writes (default false)"),
    ro: booleanOption().optional().describe("alias of readonly"),
    serial: z.string().max(20).default("dvmm").describe("serial number reported by GET_ID"),
  }),
  createDevice({ options, log, memory, msi }) {
    const readonly = options.readonly ?? options.ro ?? false;
    const backend = new FileBlockBackend(options.path, { readonly });
    log.info(`virtio-blk: ${options.path} (${backend.size} bytes${readonly ? ", read-only" : ""})`);
    return new VirtioBlk(backend, {
      serial: options.serial,
      log,
      worker: { memory, remoteMsi: msi.remote?.() ?? null },
    });
  },
});
