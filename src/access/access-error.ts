import { GitFcgiError, type ErrorCode } from '../errors.js';

/** A request refused by the access rules: its status, and the headers the answer needs. */
export class AccessDenied extends GitFcgiError {
  /** Who was refused, when known (null: anonymous), for the access log. */
  user: string | null = null;

  constructor(code: ErrorCode, status: number, message: string, headers: Array<[string, string]> = []) {
    super(code, message, { status, headers });
    this.name = 'AccessDenied';
  }
}

export function challenge(realm: string): Array<[string, string]> {
  return [['WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`]];
}

/** 401 with a challenge, so git asks for (other) credentials. */
export function unauthenticated(realm: string, message: string): AccessDenied {
  return new AccessDenied('ERR_UNAUTHENTICATED', 401, message, challenge(realm));
}
