/** The lexical rules of WSA fields (docs/protocol.md section 3), as wsa_fast/grammar.py has them. */

const CLIENT_ID = /^[A-Za-z0-9._:@-]{1,64}$/;
const METHOD = /^[A-Za-z][A-Za-z0-9_-]*@v[0-9]+\/[A-Za-z0-9_][A-Za-z0-9_./-]*$/;
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const MAX_METHOD = 128;

/** Names that mean something in from/to in one form or the other, so never a client id. */
const RESERVED_IDS = new Set(["server", "client", "s", "c"]);

export function isClientId(s: string): boolean {
  return CLIENT_ID.test(s) && !RESERVED_IDS.has(s);
}

export function isMethod(s: string): boolean {
  return s.length <= MAX_METHOD && METHOD.test(s);
}

export function isCode(s: string): boolean {
  return CODE.test(s);
}
