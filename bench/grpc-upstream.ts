import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/**
 * The gRPC upstream of bench/grpc.ts: switchyard.test.Echo (test/fixtures/grpc/echo.proto) on
 * 127.0.0.1, port 0; its Unary answers at once. Prints `{"port": N}` once listening.
 */
const proto = fileURLToPath(new URL('../test/fixtures/grpc/echo.proto', import.meta.url));
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- proto-loader's package objects are untyped by nature
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { defaults: true })) as any;
const server = new grpc.Server();
server.addService(pkg.switchyard.test.Echo.service, {
  Unary(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
    cb(null, { message: call.request.message, served_by: 'bench' });
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
