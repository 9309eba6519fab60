import { skipFor } from '../../scripts/provision/plan.mjs';
import { isPresent, readMachine } from '../../scripts/provision/probe.mjs';
import { toolNamed } from '../../scripts/provision/tools.mjs';

/**
 * The `skip` option of tests that need an optional system tool (one of scripts/provision/tools.mjs):
 * false when they can run, otherwise the reason they are skipped. In CI a missing tool is never a skip:
 * the tests then fail on it.
 */
export function skipWithout(name: string): string | false {
  const tool = toolNamed(name);
  const machine = readMachine(process.env);
  return skipFor(tool, {
    distro: machine.distro,
    epelEnabled: machine.epelEnabled,
    present: isPresent(tool, machine),
    ci: (process.env['CI'] ?? '') !== '',
  });
}
