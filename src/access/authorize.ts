import type { Logger } from '../log.js';
import type { GitTarget } from '../request/repo-path.js';
import type { AccessConfig } from './access-config.js';
import { AccessDenied, challenge } from './access-error.js';
import { IdentityChecker } from './identity.js';
import { groupsOf } from './principals.js';
import { decide } from './rules.js';
import { UncheckedUserWatch } from './unchecked-user-watch.js';

export interface AccessSettings {
  readonly access: AccessConfig;
  /** Absolute path of the config file, for the pre-receive hook (GIT_FCGI_CONFIG); null: none. */
  readonly configFile: string | null;
}

/** What an allowed request adds to the backend's environment. */
export interface Grant {
  /** The user the request runs as; null: anonymous. */
  readonly user: string | null;
  /** REMOTE_USER for the backend; absent: the front end's, as it came. */
  readonly remoteUser?: string | null;
  readonly env: Readonly<Record<string, string>>;
}

/**
 * The authorisation stage, between target validation and anything touching the repository:
 * who is asking, may they, and what git and the hooks must learn about it. Refusals throw
 * AccessDenied (401, 403, 404, 429) before anything is spawned. A grant never widens what git
 * allows: git http-backend still applies http.uploadpack/receivepack/getanyfile as configured.
 */
export class Authorizer {
  private readonly identity: IdentityChecker;
  private readonly uncheckedUsers = new UncheckedUserWatch();

  constructor(log: Logger) {
    this.identity = new IdentityChecker(log);
  }

  async authorize(
    settings: AccessSettings,
    target: GitTarget,
    params: ReadonlyMap<string, string>,
    log: Logger,
  ): Promise<Grant> {
    const { access } = settings;
    // Where REMOTE_USER is taken from the front end as it comes, look out for one nobody checked.
    if (!access.enabled || access.auth.mode === 'nginx')
      this.uncheckedUsers.observe(params, target.access, log);
    if (!access.enabled) {
      const user = params.get('REMOTE_USER') || null;
      return { user, env: hookEnv(user, [], target.repo, null) };
    }
    const user = await this.identity.identify(access.auth, params, log);
    const decision = decide(access, target.repo, target.access, user);
    if (!decision.allowed) {
      const { status, reason } = decision;
      const denied =
        status === 401
          ? new AccessDenied('ERR_UNAUTHENTICATED', 401, reason, challenge(access.auth.realm))
          : new AccessDenied(status === 404 ? 'ERR_NOT_FOUND' : 'ERR_FORBIDDEN', status, reason);
      denied.user = user;
      throw denied;
    }
    const env = hookEnv(user, groupsOf(access.groups, user), target.repo, settings.configFile);
    const authType = access.auth.mode === 'htpasswd' && user !== null ? { AUTH_TYPE: 'Basic' } : {};
    return {
      user,
      remoteUser: user,
      env: { ...env, ...authType },
      // Nothing that turns a service on: the rules only ever restrict what git itself allows.
      // A push still needs git's own yes (a user, or http.receivepack = true for anonymous ones)
      // and a repository's http.receivepack = false still refuses it.
    };
  }
}

/** What hooks learn about the push (GIT_FCGI_REQUEST_ID is set with the rest of the CGI env). */
function hookEnv(
  user: string | null,
  groups: readonly string[],
  repo: string,
  configFile: string | null,
): Record<string, string> {
  return {
    GIT_FCGI_USER: user ?? '',
    GIT_FCGI_GROUPS: groups.join(','),
    GIT_FCGI_REPO: repo,
    ...(configFile === null ? {} : { GIT_FCGI_CONFIG: configFile }),
  };
}
