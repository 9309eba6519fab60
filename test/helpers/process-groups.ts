import { liveGroupMembers } from './procfs.js';

// Children are started in their own process groups, so they outlive this process unless someone kills the
// group. Test cleanup normally does; this is the last resort when the test process exits without it.
const liveGroups = new Set<number>();
let exitHookInstalled = false;

export function trackGroup(pgid: number): void {
  liveGroups.add(pgid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const group of liveGroups) killGroup(group, 'SIGKILL');
  });
}

export function untrackGroup(pgid: number): void {
  liveGroups.delete(pgid);
}

/** Signals every process in the group; a group that is already gone is not an error. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && error.code === 'ESRCH')) throw error;
  }
}

export async function groupIsGone(pgid: number): Promise<boolean> {
  return (await liveGroupMembers(pgid)).length === 0;
}
