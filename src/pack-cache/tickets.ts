import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';

/** How a request's pack was served, for its access line. */
export type PackOutcome = 'hit' | 'miss' | 'coalesced' | 'bypass';

/** One upload-pack request that may ask for a pack: what the hook's token stands for. */
export interface Ticket {
  readonly token: string;
  readonly requestId: string;
  /** The repository's real path: the hook's directory must resolve to it. */
  readonly gitDir: string;
  outcome: PackOutcome | null;
}

/** The tokens of requests in progress; a token is valid from register() to its release. */
export class Tickets {
  private readonly byToken = new Map<string, Ticket>();

  register(requestId: string, gitDir: string): Ticket {
    let real: string;
    try {
      real = realpathSync(gitDir);
    } catch {
      real = gitDir;
    }
    const ticket: Ticket = { token: randomBytes(16).toString('hex'), requestId, gitDir: real, outcome: null };
    this.byToken.set(ticket.token, ticket);
    return ticket;
  }

  get(token: string): Ticket | undefined {
    return this.byToken.get(token);
  }

  release(ticket: Ticket): void {
    this.byToken.delete(ticket.token);
  }
}
