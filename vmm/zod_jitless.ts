/**
 * Puts zod in its jitless mode before any schema is built (import it first).
 * Zod compiles a fast parser for each object schema with `new Function` on
 * first use. dvmm validates each config, flag set and plugin manifest once,
 * so the compiling costs more than it saves: about 0.2 s of a launch under
 * nested virtualization. Only speed changes, never what is accepted.
 *
 * @module
 */

import { z } from "zod";

z.config({ jitless: true });
