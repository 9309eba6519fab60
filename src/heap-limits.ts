import { setFlagsFromString } from 'node:v8';

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
