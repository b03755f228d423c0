import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { describe, it } from 'node:test';
import { errors } from 'undici';
import { UPSTREAM_CODES } from '../../src/dataplane/engine/upstream-codes.ts';

/** Every code undici's error classes carry, each class made as undici makes it. */
function undiciCodes(): Set<string> {
  const codes = new Set<string>();
  for (const E of Object.values(errors) as (new (...args: unknown[]) => { code?: unknown })[]) {
    if (typeof E !== 'function') continue;
    // some classes need more arguments (a status, headers): they carry codes we do not use
    let code: unknown;
    try {
      code = new E('probe').code;
    } catch {
      continue;
    }
    if (typeof code === 'string') codes.add(code);
  }
  return codes;
}

describe('upstream error codes', () => {
  it("names each undici code as undici's own error classes spell it, so the native engine's errors take the same retry, timeout and health paths", () => {
    const known = undiciCodes();
    const ours = Object.values(UPSTREAM_CODES).filter((c) => c.startsWith('UND_ERR_'));
    assert.ok(ours.length >= 7);
    for (const code of ours) assert.ok(known.has(code), `${code} is not a code of undici's errors (${[...known].join(', ')})`);
  });

  it('names each system code as the system does (errno names, or getaddrinfo\'s for a name that does not resolve)', () => {
    const dns = new Set(['ENOTFOUND', 'EAI_AGAIN']);
    for (const code of Object.values(UPSTREAM_CODES).filter((c) => /^E[A-Z]+$/.test(c) && !dns.has(c))) {
      assert.ok(code in constants.errno, `${code} is not an errno name`);
    }
  });

  it('holds each code once, so two names never mean one failure', () => {
    const values = Object.values(UPSTREAM_CODES);
    assert.equal(new Set(values).size, values.length);
  });
});
