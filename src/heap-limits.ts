import { setFlagsFromString } from 'node:v8';

/**
 * Keeps V8's young generation at its initial size (a 1 MiB semi-space) instead of letting it
 * grow to 16 MiB semi-spaces under load. The daemon's garbage is short-lived (stream chunks,
 * per-request objects), so small scavenges cost little, while the larger young generation
 * stays resident: some 30 MB more RSS, and more pages for every fork() of a backend to copy
 * and write-protect. Read by V8 whenever it considers growing new space, so it takes effect
 * at run time (unlike --max-semi-space-size, which only works on node's command line).
 *
 * Imported for its effect, first thing in the CLI.
 */
setFlagsFromString('--semi-space-growth-factor=1');
