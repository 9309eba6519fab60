import { createHash, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import bcrypt from 'bcryptjs';

// apache-md5 is CommonJS (`module.exports = fn`) but its typings declare an ES default export,
// which TypeScript under NodeNext resolves to the wrong thing: load it as what it is.
const aprMd5 = createRequire(import.meta.url)('apache-md5') as (password: string, salt: string) => string;

/** The htpasswd schemes git-fcgi verifies: `htpasswd -B`, `-m` and `-s`. */
export type HashScheme = 'bcrypt' | 'apr1' | 'sha1';

/** null: plain text or crypt(3), which git-fcgi refuses. */
export function schemeOf(hash: string): HashScheme | null {
  if (/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return 'bcrypt';
  if (/^\$apr1\$[^$]{0,8}\$[./A-Za-z0-9]{22}$/.test(hash)) return 'apr1';
  if (/^\{SHA\}[A-Za-z0-9+/]{27}=$/.test(hash)) return 'sha1';
  return null;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // The lengths are a property of the scheme, not a secret.
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * apache-md5 hashes its string argument one byte per character (latin1); handing it the
 * password's UTF-8 bytes as latin1 makes non-ASCII passwords hash like `htpasswd -m` does.
 */
function apr1(password: string, salt: string): string {
  return aprMd5(Buffer.from(password, 'utf8').toString('latin1'), salt);
}

/** Verifies a password against one htpasswd hash; bcrypt runs asynchronously, off the event loop's critical path. */
export async function verifyPassword(password: string, hash: string, scheme: HashScheme): Promise<boolean> {
  switch (scheme) {
    case 'bcrypt':
      return bcrypt.compare(password, hash);
    case 'apr1':
      return equalStrings(apr1(password, hash), hash);
    case 'sha1':
      return equalStrings(`{SHA}${createHash('sha1').update(password, 'utf8').digest('base64')}`, hash);
  }
}

let dummy: string | undefined;

/**
 * Spends about the time of a real bcrypt check on an unknown user name, so response times do
 * not tell which names exist.
 */
export async function verifyNothing(password: string): Promise<false> {
  dummy ??= bcrypt.hashSync('git-fcgi', 5);
  await bcrypt.compare(password, dummy);
  return false;
}
