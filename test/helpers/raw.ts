import { connect } from 'node:net';

/** Sends raw bytes (a string is sent as UTF-8) to a port and resolves with everything read until the peer closes or `ms` passes. */
export function rawRequest(port: number, payload: string | Buffer, ms = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(payload));
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/** The status code of the first response in a raw HTTP/1.1 reply. */
export function statusOf(reply: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(reply);
  return m ? Number(m[1]) : 0;
}

/** Every status code of a raw reply, in order: 1xx first, then each pipelined response. */
export function statusesOf(reply: string): number[] {
  return [...reply.matchAll(/HTTP\/1\.[01] (\d{3}) [^\r\n]*\r\n/g)].map((m) => Number(m[1]));
}
