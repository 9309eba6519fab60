import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GitFcgiError } from '../../../src/errors.js';
import {
  MAX_PATH_BYTES,
  derivePathInfo,
  parseGitTarget,
  splitPathHint,
  type GitTarget,
} from '../../../src/request/repo-path.js';

const HEX38 = '0123456789abcdef0123456789abcdef012345';
const HEX40 = `${HEX38}67`;
const HEX62 = `${HEX40}0123456789abcdef012345`;
const HEX64 = `${HEX62}67`;

function isError(code: string, status: number): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof GitFcgiError, `not a GitFcgiError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    return true;
  };
}

describe('derivePathInfo', () => {
  const derive = (entries: Record<string, string>): string | undefined =>
    derivePathInfo(new Map(Object.entries(entries)));

  it('uses PATH_INFO when present', () => {
    assert.equal(derive({ PATH_INFO: '/x.git/info/refs', DOCUMENT_URI: '/other' }), '/x.git/info/refs');
  });

  it('adds the leading slash PATH_INFO often lacks', () => {
    assert.equal(derive({ PATH_INFO: 'x.git/info/refs' }), '/x.git/info/refs');
    assert.equal(derive({ DOCUMENT_URI: 'x.git/HEAD' }), '/x.git/HEAD');
  });

  it('falls back to DOCUMENT_URI when PATH_INFO is missing or empty', () => {
    assert.equal(derive({ DOCUMENT_URI: '/x.git/HEAD' }), '/x.git/HEAD');
    assert.equal(derive({ PATH_INFO: '', DOCUMENT_URI: '/x.git/HEAD' }), '/x.git/HEAD');
  });

  it('strips a SCRIPT_NAME prefix from DOCUMENT_URI', () => {
    assert.equal(derive({ DOCUMENT_URI: '/git/team/x.git/HEAD', SCRIPT_NAME: '/git' }), '/team/x.git/HEAD');
    assert.equal(derive({ DOCUMENT_URI: '/git/team/x.git/HEAD', SCRIPT_NAME: '/git/' }), '/team/x.git/HEAD');
  });

  it('keeps DOCUMENT_URI whole when SCRIPT_NAME is all of it (stock fastcgi_params)', () => {
    assert.equal(derive({ DOCUMENT_URI: '/x.git/HEAD', SCRIPT_NAME: '/x.git/HEAD' }), '/x.git/HEAD');
  });

  it('strips SCRIPT_NAME only at a segment boundary', () => {
    assert.equal(derive({ DOCUMENT_URI: '/gitx/a.git/HEAD', SCRIPT_NAME: '/git' }), '/gitx/a.git/HEAD');
    assert.equal(derive({ DOCUMENT_URI: '/a.git/HEAD', SCRIPT_NAME: '/git' }), '/a.git/HEAD');
    assert.equal(derive({ DOCUMENT_URI: '/a.git/HEAD', SCRIPT_NAME: '/' }), '/a.git/HEAD');
  });

  it('falls back to REQUEST_URI: query dropped, percent-decoded, SCRIPT_NAME stripped', () => {
    assert.equal(derive({ REQUEST_URI: '/x.git/info/refs?service=git-upload-pack' }), '/x.git/info/refs');
    assert.equal(derive({ REQUEST_URI: '/caf%C3%A9.git/HEAD' }), '/café.git/HEAD');
    assert.equal(derive({ REQUEST_URI: '/git/x.git/HEAD?a=b', SCRIPT_NAME: '/git' }), '/x.git/HEAD');
    assert.equal(derive({ DOCUMENT_URI: '', REQUEST_URI: '/x.git/HEAD' }), '/x.git/HEAD');
  });

  it('decodes REQUEST_URI once, so encoded traversal shows up for parseGitTarget', () => {
    assert.equal(derive({ REQUEST_URI: '/a%2F..' }), '/a/..');
    assert.equal(derive({ REQUEST_URI: '/a/%252e%252e/b' }), '/a/%2e%2e/b');
  });

  it('takes the path of an absolute-form REQUEST_URI', () => {
    assert.equal(derive({ REQUEST_URI: 'http://example.test/x.git/HEAD?x' }), '/x.git/HEAD');
    assert.equal(derive({ REQUEST_URI: 'https://example.test' }), '/');
  });

  it('returns undefined for invalid percent-escapes or UTF-8 in REQUEST_URI', () => {
    assert.equal(derive({ REQUEST_URI: '/x.git/%zz' }), undefined);
    assert.equal(derive({ REQUEST_URI: '/x.git/%' }), undefined);
    assert.equal(derive({ REQUEST_URI: '/x%ff.git/HEAD' }), undefined);
    assert.equal(derive({ REQUEST_URI: '/x%c0%ae.git/HEAD' }), undefined);
  });

  it('returns undefined when nothing names a path', () => {
    assert.equal(derive({}), undefined);
    assert.equal(derive({ PATH_INFO: '', DOCUMENT_URI: '', REQUEST_URI: '' }), undefined);
    assert.equal(derive({ REQUEST_URI: '?service=git-upload-pack' }), undefined);
  });
});

describe('parseGitTarget: routes', () => {
  const accepted: Array<[string, string, string, GitTarget]> = [
    [
      '/x.git/info/refs',
      '',
      'GET',
      { pathInfo: '/x.git/info/refs', repo: 'x.git', service: null, access: 'read', kind: 'dumb' },
    ],
    [
      '/x.git/info/refs',
      'service=git-upload-pack',
      'GET',
      {
        pathInfo: '/x.git/info/refs',
        repo: 'x.git',
        service: 'git-upload-pack',
        access: 'read',
        kind: 'smart-refs',
      },
    ],
    [
      '/x.git/info/refs',
      'service=git-receive-pack',
      'GET',
      {
        pathInfo: '/x.git/info/refs',
        repo: 'x.git',
        service: 'git-receive-pack',
        access: 'write',
        kind: 'smart-refs',
      },
    ],
    [
      '/x.git/info/refs',
      'service=git-upload-archive',
      'HEAD',
      {
        pathInfo: '/x.git/info/refs',
        repo: 'x.git',
        service: 'git-upload-archive',
        access: 'read',
        kind: 'smart-refs',
      },
    ],
    [
      '/team/app.git/HEAD',
      '',
      'GET',
      { pathInfo: '/team/app.git/HEAD', repo: 'team/app.git', service: null, access: 'read', kind: 'dumb' },
    ],
    [
      'team/app.git/HEAD',
      '',
      'HEAD',
      { pathInfo: '/team/app.git/HEAD', repo: 'team/app.git', service: null, access: 'read', kind: 'dumb' },
    ],
    [
      '/x.git/git-upload-pack',
      '',
      'POST',
      {
        pathInfo: '/x.git/git-upload-pack',
        repo: 'x.git',
        service: 'git-upload-pack',
        access: 'read',
        kind: 'smart-rpc',
      },
    ],
    [
      '/x.git/git-receive-pack',
      '',
      'POST',
      {
        pathInfo: '/x.git/git-receive-pack',
        repo: 'x.git',
        service: 'git-receive-pack',
        access: 'write',
        kind: 'smart-rpc',
      },
    ],
    [
      '/x.git/git-upload-archive',
      'service=git-receive-pack',
      'POST',
      {
        pathInfo: '/x.git/git-upload-archive',
        repo: 'x.git',
        service: 'git-upload-archive',
        access: 'read',
        kind: 'smart-rpc',
      },
    ],
  ];
  for (const [pathInfo, query, method, expected] of accepted) {
    it(`${method} ${pathInfo}?${query}`, () => {
      assert.deepEqual(parseGitTarget(pathInfo, query, method), expected);
    });
  }

  const dumb = [
    '/x.git/HEAD',
    '/x.git/objects/info/alternates',
    '/x.git/objects/info/http-alternates',
    '/x.git/objects/info/packs',
    `/x.git/objects/12/${HEX38}`,
    `/x.git/objects/ab/${HEX62}`,
    `/x.git/objects/pack/pack-${HEX40}.pack`,
    `/x.git/objects/pack/pack-${HEX40}.idx`,
    `/x.git/objects/pack/pack-${HEX64}.pack`,
    `/x.git/objects/pack/pack-${HEX64}.idx`,
  ];
  for (const pathInfo of dumb) {
    it(`GET and HEAD ${pathInfo} are dumb reads; POST is 405`, () => {
      const expected: GitTarget = { pathInfo, repo: 'x.git', service: null, access: 'read', kind: 'dumb' };
      assert.deepEqual(parseGitTarget(pathInfo, '', 'GET'), expected);
      assert.deepEqual(parseGitTarget(pathInfo, 'service=git-receive-pack', 'HEAD'), expected);
      assert.throws(() => parseGitTarget(pathInfo, '', 'POST'), isError('ERR_METHOD', 405));
    });
  }

  it('takes the repository to be everything before the route, like git', () => {
    assert.equal(parseGitTarget('/a/b/c.git/HEAD', '', 'GET').repo, 'a/b/c.git');
    assert.equal(parseGitTarget('/x/HEAD/HEAD', '', 'GET').repo, 'x/HEAD');
    assert.equal(parseGitTarget('/x.git/objects/info/refs', '', 'GET').repo, 'x.git/objects');
    assert.equal(parseGitTarget('/x.git/git-upload-pack/git-receive-pack', '', 'POST').access, 'write');
  });

  it('accepts names that only look like dots or options', () => {
    assert.equal(parseGitTarget('/a..b.git/HEAD', '', 'GET').repo, 'a..b.git');
    assert.equal(parseGitTarget('/.x/y-.git/HEAD', '', 'GET').repo, '.x/y-.git');
    assert.equal(parseGitTarget('/...git/HEAD', '', 'GET').repo, '...git');
    assert.equal(parseGitTarget('/café.git/HEAD', '', 'GET').repo, 'café.git');
    assert.equal(parseGitTarget('/a%20b.git/HEAD', '', 'GET').repo, 'a%20b.git');
  });

  const notFound = [
    '/x.git/config',
    '/x.git/description',
    '/x.git/hooks/pre-receive',
    '/x.git/info/REFS',
    '/x.git/info/refs.bak',
    '/x.git/objects/info/packs2',
    `/x.git/objects/12/${HEX38}0`,
    `/x.git/objects/12/${HEX38.slice(1)}`,
    `/x.git/objects/1/${HEX38}2`,
    `/x.git/objects/AB/${HEX38}`,
    `/x.git/objects/ab/${HEX38.toUpperCase()}`,
    `/x.git/objects/pack/pack-${HEX38}.pack`,
    `/x.git/objects/pack/pack-${HEX40}.keep`,
    `/x.git/objects/pack/${HEX40}.pack`,
    '/x.git/objects/pack/pack-xyz.pack',
    '/x.git',
    '/x.git/info',
    '/HEAD',
    '/info/refs',
    `/objects/12/${HEX38}`,
    '/',
    '',
  ];
  for (const pathInfo of notFound) {
    it(`GET ${JSON.stringify(pathInfo)} is ERR_NOT_FOUND (404)`, () => {
      assert.throws(() => parseGitTarget(pathInfo, '', 'GET'), isError('ERR_NOT_FOUND', 404));
    });
  }
  it('POST /git-upload-pack without a repository is ERR_NOT_FOUND (404)', () => {
    assert.throws(() => parseGitTarget('/git-upload-pack', '', 'POST'), isError('ERR_NOT_FOUND', 404));
  });
});

describe('parseGitTarget: methods', () => {
  const wrong: Array<[string, string]> = [
    ['/x.git/git-upload-pack', 'GET'],
    ['/x.git/git-upload-pack', 'HEAD'],
    ['/x.git/git-receive-pack', 'GET'],
    ['/x.git/git-upload-archive', 'GET'],
    ['/x.git/info/refs', 'POST'],
    ['/x.git/HEAD', 'POST'],
    ['/x.git/info/refs', 'PUT'],
    ['/x.git/info/refs', 'DELETE'],
    ['/x.git/info/refs', 'OPTIONS'],
    ['/x.git/git-receive-pack', 'PATCH'],
    ['/x.git/info/refs', 'get'],
    ['/x.git/info/refs', ''],
  ];
  for (const [pathInfo, method] of wrong) {
    it(`${JSON.stringify(method)} ${pathInfo} is ERR_METHOD (405)`, () => {
      assert.throws(() => parseGitTarget(pathInfo, '', method), isError('ERR_METHOD', 405));
    });
  }

  it("says what is allowed, as git's bad_request() does; 400 when the request is not HTTP/1.1", () => {
    const allowed = (pathInfo: string, method: string): unknown => {
      try {
        parseGitTarget(pathInfo, '', method);
      } catch (err) {
        return err instanceof GitFcgiError ? err.headers : err;
      }
      return null;
    };
    assert.deepEqual(allowed('/x.git/info/refs', 'PUT'), [['Allow', 'GET, HEAD']]);
    assert.deepEqual(allowed('/x.git/git-upload-pack', 'GET'), [['Allow', 'POST']]);
    assert.throws(
      () => parseGitTarget('/x.git/info/refs', '', 'PUT', 'HTTP/1.0'),
      isError('ERR_METHOD', 400),
    );
    assert.throws(
      () => parseGitTarget('/x.git/info/refs', '', 'POST', 'HTTP/2.0'),
      isError('ERR_METHOD', 400),
    );
  });

  it('a method on a path that is no route is 404, as git answers it', () => {
    assert.throws(() => parseGitTarget('/x.git/config', '', 'PROPFIND'), isError('ERR_NOT_FOUND', 404));
  });
});

describe('parseGitTarget: bad paths', () => {
  const bad: Array<[string, string]> = [
    ['/../etc/passwd', 'a .. segment'],
    ['/x.git/..', 'a trailing .. segment'],
    ['/x.git/../y.git/HEAD', 'a .. segment in the middle'],
    ['/./x.git/HEAD', 'a . segment'],
    ['/x.git/./HEAD', 'a . segment before the route'],
    ['/a/%2e%2e/b', 'encoded dots'],
    ['/a/%2E%2e/x.git/HEAD', 'encoded dots, mixed case'],
    ['/a%2F..', 'an encoded slash'],
    ['/x.git%2finfo/refs', 'an encoded slash, lower case'],
    ['/a%5cb.git/HEAD', 'an encoded backslash'],
    ['/a%00.git/HEAD', 'an encoded NUL'],
    ['/a\\b', 'a backslash'],
    ['/x.git\\..\\y/HEAD', 'backslash traversal'],
    ['/a\0b', 'NUL'],
    ['/x.git/HEAD\0', 'a trailing NUL'],
    ['/x.git/HEAD\n', 'LF'],
    ['/x\r.git/HEAD', 'CR'],
    ['/x\t.git/HEAD', 'TAB'],
    ['/x\x1f.git/HEAD', 'US'],
    ['/x\x7f.git/HEAD', 'DEL'],
    ['/x\x85.git/HEAD', 'a C1 control'],
    ['/x\uFFFD.git/HEAD', 'U+FFFD from invalid UTF-8'],
    ['/x\uD800.git/HEAD', 'a lone surrogate'],
    ['//x.git/HEAD', 'an empty first segment'],
    ['/x.git//HEAD', 'an empty segment'],
    ['/team//x.git/info/refs', 'an empty segment in the repository'],
    ['/x.git/info/refs/', 'a trailing slash'],
    ['/-x.git/HEAD', 'a segment starting with -'],
    ['/team/--upload-pack=evil/HEAD', 'an option-like segment'],
    ['/x.git/-/HEAD', 'a lone - segment'],
    [`/${'a/'.repeat(32 * 1024)}HEAD`, 'a 64 KiB path'],
    [`/${'a'.repeat(MAX_PATH_BYTES - 5)}/HEAD`, 'one byte over the limit'],
    [`/${'é'.repeat(2048)}/HEAD`, 'over the limit in bytes though not in characters'],
  ];
  for (const [pathInfo, what] of bad) {
    it(`${what} is ERR_BAD_PATH (400)`, () => {
      assert.throws(() => parseGitTarget(pathInfo, '', 'GET'), isError('ERR_BAD_PATH', 400));
    });
  }

  it('rejects a bad path before looking at the method', () => {
    assert.throws(() => parseGitTarget('/../x.git/info/refs', '', 'PUT'), isError('ERR_BAD_PATH', 400));
  });

  it(`accepts a path of exactly ${MAX_PATH_BYTES} bytes`, () => {
    const pathInfo = `/${'a'.repeat(MAX_PATH_BYTES - 6)}/HEAD`;
    assert.equal(Buffer.byteLength(pathInfo), MAX_PATH_BYTES);
    assert.equal(parseGitTarget(pathInfo, '', 'GET').repo.length, MAX_PATH_BYTES - 6);
  });
});

describe('parseGitTarget: info/refs query', () => {
  const refs = (query: string): GitTarget => parseGitTarget('/x.git/info/refs', query, 'GET');

  it('parses the query like a query, not a substring', () => {
    assert.equal(refs('foo=bar&service=git-receive-pack').access, 'write');
    assert.equal(refs('service=git%2Dreceive%2Dpack').access, 'write');
    assert.equal(refs('serv%69ce=git-receive-pack').access, 'write');
    assert.equal(refs('xservice=git-receive-pack').service, null);
    assert.equal(refs('service_=git-receive-pack').access, 'read');
    assert.equal(refs('a=service%3Dgit-receive-pack').kind, 'dumb');
    assert.equal(refs('service=git-upload-pack&service=git-upload-pack').service, 'git-upload-pack');
  });

  const unsupported: Array<[string, string]> = [
    ['service=git-foo', 'an unknown service'],
    ['service=receive-pack', 'a service without git-'],
    ['service=GIT-RECEIVE-PACK', 'a service in the wrong case'],
    ['service=', 'an empty service'],
    ['service', 'a service without a value (git would read the next parameter as its value)'],
    ['service&git-receive-pack', "git's reading of that: service=git-receive-pack"],
    ['service=git-upload-pack+', 'a plus (a space) after the service'],
  ];
  for (const [query, what] of unsupported) {
    it(`refuses ${what} with ERR_FORBIDDEN (403), as git's select_service() does`, () => {
      assert.throws(() => refs(query), isError('ERR_FORBIDDEN', 403));
    });
  }

  const rejected: Array<[string, string]> = [
    ['service=git-upload-pack&service=git-receive-pack', 'conflicting services (git takes the last)'],
    ['service=git-receive-pack&service=git-upload-pack', 'conflicting services, other order'],
    ['service=git-receive-pack%00', 'a NUL in the value (git stops there)'],
    ['service%00x=git-receive-pack', 'a NUL in a name (git would see "service")'],
    ['service=git-upload-pack%00git-receive-pack', 'a NUL hiding a second value'],
  ];
  for (const [query, what] of rejected) {
    it(`rejects ${what} with ERR_BAD_REQUEST (400)`, () => {
      assert.throws(() => refs(query), isError('ERR_BAD_REQUEST', 400));
    });
  }
});

describe('splitPathHint', () => {
  const hint = (entries: Record<string, string>): string | undefined =>
    splitPathHint(new Map(Object.entries(entries)));

  // What lighttpd 1.4.69 mounted at "/" without "fix-root-scriptname" sends.
  it('names the fix when the repository went into a one-segment SCRIPT_NAME', () => {
    for (const pathInfo of [
      '/info/refs',
      '/HEAD',
      '/git-upload-pack',
      '/git-receive-pack',
      '/objects/info/packs',
    ]) {
      const text = hint({ SCRIPT_NAME: '/demo.git', PATH_INFO: pathInfo });
      assert.ok(text !== undefined, pathInfo);
      assert.match(text, /SCRIPT_NAME \(\/demo\.git\)/);
      assert.match(text, /"fix-root-scriptname" => "enable"/);
    }
    assert.ok(hint({ SCRIPT_NAME: '/project', PATH_INFO: `/objects/pack/pack-${HEX40}.idx` }));
  });

  it('stays quiet when PATH_INFO names a repository itself', () => {
    assert.equal(hint({ SCRIPT_NAME: '/team', PATH_INFO: '/app.git/info/refs' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '/git', PATH_INFO: '/demo.git/HEAD' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '', PATH_INFO: '/demo.git/info/refs' }), undefined);
  });

  it('stays quiet without that shape: SCRIPT_NAME of several segments, or missing; no git route', () => {
    assert.equal(hint({ SCRIPT_NAME: '/a/demo.git', PATH_INFO: '/info/refs' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '/', PATH_INFO: '/info/refs' }), undefined);
    assert.equal(hint({ PATH_INFO: '/info/refs' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '/demo.git' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '/demo.git', PATH_INFO: '/README' }), undefined);
    assert.equal(hint({ SCRIPT_NAME: '/demo.git', PATH_INFO: '/info/refs/x' }), undefined);
  });
});
