/** FastCGI 1.0 constants (https://fastcgi-archives.github.io/FastCGI_Specification.html). */

export const FCGI_VERSION_1 = 1;
export const FCGI_HEADER_LEN = 8;
/** Largest content a single record can carry (16-bit length field). */
export const FCGI_MAX_CONTENT_LEN = 0xffff;
export const FCGI_NULL_REQUEST_ID = 0;

export const RecordType = {
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
} as const;
export type RecordTypeValue = (typeof RecordType)[keyof typeof RecordType];

export const Role = { RESPONDER: 1, AUTHORIZER: 2, FILTER: 3 } as const;

export const ProtocolStatus = {
  REQUEST_COMPLETE: 0,
  CANT_MPX_CONN: 1,
  OVERLOADED: 2,
  UNKNOWN_ROLE: 3,
} as const;
export type ProtocolStatusValue = (typeof ProtocolStatus)[keyof typeof ProtocolStatus];

/** BEGIN_REQUEST flags bit: keep the connection open after END_REQUEST. */
export const FCGI_KEEP_CONN = 1;
