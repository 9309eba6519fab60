import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Two V8 settings that keep the daemon's memory near what it uses. Both are read by V8 whenever
 * it considers growing the heap, so they take effect at run time (unlike --max-semi-space-size
 * or --max-old-space-size, which only work on node's command line).
 *
 * Keeps V8's young generation at its initial size (a 1 MiB semi-space) instead of letting it
 * grow to 16 MiB semi-spaces under load. The daemon's garbage is short-lived (stream chunks,
 * per-request objects), so small scavenges cost little, while the larger young generation
 * stays resident: some 30 MB more RSS.
 *
 * Grows the old generation by 10% of its live size at each full collection instead of V8's
 * default factor (up to 4x while it thinks memory is plentiful). The old generation holds
 * little that lives long (config, loaded modules, per-connection state), so letting it grow 4x
 * between collections was 15 MB of garbage kept resident under a ref-advertisement load
 * (peak RSS 88-91 MB -> 74 MB measured), for no measurable CPU saved. No hard cap: a heap
 * that really needs to grow still does.
 *
 * Imported for its effect, first thing in the CLI.
 */
setFlagsFromString('--semi-space-growth-factor=1');
setFlagsFromString('--heap-growing-percent=10');

/**
 * Every read from a socket or pipe allocates its own chunk (up to 64 KiB) outside the V8 heap,
 * freed only when a garbage collection finds the small Buffer object that holds it dead. With
 * the young generation kept small, a collection comes rarely compared with such chunks, and V8
 * lets up to 64 MB of them pile up before forcing one: that was 20-30 MB of peak RSS on a
 * large push. So the relay asks for a young-generation collection (0.3-0.6 ms, its live set
 * is small) after every CHUNK_GC_BYTES of streamed data. (git's output needs none: it is read
 * into one reused buffer.)
 *
 * The budget must also stay well under the old generation's headroom: V8 counts off-heap
 * memory allocated since its last full collection against the old generation's limit, and
 * once the old generation has been collected (after a load of ref advertisements, say) that
 * headroom is about 8-10 MB. At 8 MiB the chunks alone reached it, and a push ran an
 * incremental mark-compact about every 100-200 ms: git-fcgi's own CPU for a 1.07 GB push right
 * after the ref case was 2.48 s at 8 MiB against 1.43 s at 2 MiB (medians of 3, one bench run;
 * 80 full collections in the last 15 s against 13). 2 MiB: 512 young collections per GB, each
 * under a millisecond.
 */
export const CHUNK_GC_BYTES = 2 * 1024 * 1024;

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as ((options: { type: 'minor' }) => void) | undefined;
let streamed = 0;

/** Counts bytes of chunks that are now garbage; collects the young generation when due. */
export function chunksDone(bytes: number): void {
  streamed += bytes;
  if (streamed < CHUNK_GC_BYTES) return;
  streamed = 0;
  collect?.({ type: 'minor' });
}
