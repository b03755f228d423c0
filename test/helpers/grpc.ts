import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../fixtures/grpc/', import.meta.url));
const LOAD = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true } as const;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- proto-loader's package objects are untyped by nature
const echoPkg = grpc.loadPackageDefinition(protoLoader.loadSync(`${FIXTURES}echo.proto`, LOAD)) as any;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
const healthPkg = grpc.loadPackageDefinition(protoLoader.loadSync(`${FIXTURES}health.proto`, LOAD)) as any;

export interface EchoRequest {
  message?: string;
  failCode?: number;
  delayMs?: number;
  count?: number;
  intervalMs?: number;
}
export interface EchoReply {
  message: string;
  servedBy: string;
}

export type HealthStatus = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN';

export interface GrpcUpstream {
  readonly url: string;
  readonly port: number;
  readonly label: string;
  /** calls started on this server */
  calls: number;
  /** bidi and server streams open now */
  open: number;
  /** what grpc.health.v1.Health/Check answers */
  health: HealthStatus;
  /** the metadata of the last call */
  lastMetadata: grpc.Metadata | null;
  close(): Promise<void>;
}

/** Trailing metadata every successful call gets: a binary field that must arrive byte for byte. */
export const TRAILER_BIN = Buffer.from([0, 1, 2, 0xfe, 0xff, 10, 13]);

function trailers(call: { metadata: grpc.Metadata }): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-trailer-bin', TRAILER_BIN);
  // a -bin field the client sent comes back in the trailers
  const sent = call.metadata.get('x-echo-bin')[0];
  if (sent !== undefined) md.set('x-echo-bin', sent);
  return md;
}

/**
 * A grpc-js server on port 0 speaking switchyard.test.Echo (test/fixtures/grpc/echo.proto) and
 * grpc.health.v1.Health, answering with its `label` so a test knows which pool served a call.
 */
export async function startGrpcUpstream(label: string, creds: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<GrpcUpstream> {
  const server = new grpc.Server();
  const up: GrpcUpstream = {
    url: '',
    port: 0,
    label,
    calls: 0,
    open: 0,
    health: 'SERVING',
    lastMetadata: null,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
  const start = (call: { metadata: grpc.Metadata }): void => {
    up.calls++;
    up.lastMetadata = call.metadata;
  };
  const fail = (req: EchoRequest, call: { metadata: grpc.Metadata }): grpc.ServiceError | null => {
    if (!req.failCode) return null;
    const md = trailers(call);
    return Object.assign(new Error(`failed on purpose by ${label}`), { code: req.failCode, details: `failed on purpose by ${label}`, metadata: md }) as grpc.ServiceError;
  };
  server.addService(echoPkg.switchyard.test.Echo.service, {
    Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      start(call);
      const req = call.request;
      setTimeout(() => {
        const err = fail(req, call);
        if (err !== null) cb(err);
        else cb(null, { message: req.message ?? '', servedBy: label }, trailers(call));
      }, req.delayMs ?? 0);
    },
    ServerStream(call: grpc.ServerWritableStream<EchoRequest, EchoReply>) {
      start(call);
      up.open++;
      call.once('close', () => up.open--);
      const req = call.request;
      let i = 0;
      const next = (): void => {
        if (call.cancelled || call.destroyed) return;
        if (i >= (req.count ?? 0)) {
          const err = fail(req, call);
          if (err !== null) call.destroy(err);
          else call.end(trailers(call));
          return;
        }
        call.write({ message: `${req.message ?? ''}#${i++}`, servedBy: label });
        setTimeout(next, req.intervalMs ?? 0);
      };
      next();
    },
    ClientStream(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      start(call);
      const parts: string[] = [];
      call.on('data', (r: EchoRequest) => parts.push(r.message ?? ''));
      call.on('end', () => cb(null, { message: parts.join(','), servedBy: label }, trailers(call)));
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      start(call);
      up.open++;
      call.once('close', () => up.open--);
      call.on('data', (r: EchoRequest) => call.write({ message: r.message ?? '', servedBy: label }));
      call.on('end', () => call.end(trailers(call)));
      call.on('error', () => undefined);
    },
  });
  server.addService(healthPkg.grpc.health.v1.Health.service, {
    Check(_call: unknown, cb: grpc.sendUnaryData<{ status: HealthStatus }>) {
      cb(null, { status: up.health });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return Object.assign(up, { port, url: `http://127.0.0.1:${port}` });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the generated client has a method per rpc
export type EchoClient = grpc.Client & Record<string, any>;

/** An Echo client for `address` (`127.0.0.1:PORT`), insecure (h2c) unless `creds` say otherwise. */
export function echoClient(address: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): EchoClient {
  return new echoPkg.switchyard.test.Echo(address, creds, options) as EchoClient;
}

/** One unary call: the reply and the trailing metadata, or the error. */
export function unary(client: EchoClient, req: EchoRequest, metadata: grpc.Metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<{ reply: EchoReply; trailers: grpc.Metadata; headers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let trailersMd = new grpc.Metadata();
    let headersMd = new grpc.Metadata();
    const call = client.Unary(req, metadata, options, (err: grpc.ServiceError | null, reply: EchoReply) => {
      if (err) reject(err);
      else setImmediate(() => resolve({ reply, trailers: trailersMd, headers: headersMd }));
    });
    call.on('metadata', (md: grpc.Metadata) => (headersMd = md));
    call.on('status', (s: grpc.StatusObject) => (trailersMd = s.metadata));
  });
}

export { grpc };
