/**
 * Serving a virtio-blk request queue in batches, as the I/O worker does on
 * each doorbell (and its JIT warm-up does on synthetic requests).
 *
 * @module
 */

import { type BlkRequestEnv, serveBlkRequest } from "./blk_request.ts";
import type { ChainBuffers, Virtqueue } from "./virtqueue.ts";

/**
 * Serve every available request of `vq` (stopping early when `stop` says so)
 * and return how many. Doorbells are suppressed while serving; re-enabling
 * them is followed by a last look at the available ring, so a request the
 * driver added meanwhile is not missed. The caller then asks
 * {@linkcode Virtqueue.needsNotification} and interrupts the driver once for
 * the batch.
 */
export function serveAvailable(
  vq: Virtqueue,
  chain: ChainBuffers,
  env: BlkRequestEnv,
  stop: () => boolean,
): number {
  let served = 0;
  // Every call runs every call site here (no short cuts, no second site for a rare case): a
  // site first reached in the guest's requests would meet optimized code that has no type
  // feedback for it and throw that code away (a deopt), the warm-up's work lost.
  for (;;) {
    vq.setNotification(false);
    while (vq.popInto(chain)) {
      serveBlkRequest(env, vq, chain);
      served++;
      if (stop()) break;
    }
    vq.setNotification(true);
    const more = vq.available() !== 0;
    if (stop() || !more) return served;
  }
}
