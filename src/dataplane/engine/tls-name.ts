import { createRequire } from 'node:module';
import type { buildConnector, Dispatcher } from 'undici';
import type { Upstream } from './upstream.ts';

const require = createRequire(import.meta.url);
let build: typeof buildConnector | undefined;

/**
 * undici's connector for an https:// target, checking the certificate for the name in the
 * target's URL (an IP target: for its IP, with no SNI) whatever server name a request carries.
 * Paired with pinServerName, which keeps that request name constant.
 */
export function targetConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  // the connector alone, as target.ts takes the Pool class alone, and only for an https:// or h2
  // target: loaded with the data plane it cost every start undici's core (README Performance,
  // "Memory by start path"); a synchronous require when the target is built, never per request
  build ??= require('undici/lib/core/connect.js') as typeof buildConnector;
  const connect = build(options);
  // no name: undici falls back to the origin's host name, none for an IP (then Node checks the IP)
  return (opts, callback) => connect({ ...opts, servername: '' }, callback);
}

/**
 * An https:// target's engine that verifies the target's certificate (and sends SNI) for the
 * host name in the target's URL. Why: the proxy forwards the client's Host, and undici takes the
 * TLS server name from the Host of each request, so without this a target `https://api-1.internal`
 * serving `shop.example.com` would be checked against shop.example.com, a name it need not hold
 * (and each new Host would tear the session down). The name the operator wrote is the one to trust,
 * as curl and nginx's `proxy_ssl_name $proxy_host` do. The engine must connect with
 * targetConnector, which checks that name (or an IP target's IP, sent as no SNI: RFC 6066).
 */
export function pinServerName(origin: string, upstream: Upstream): Upstream {
  const u = new URL(origin);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (u.protocol !== 'https:') return upstream;
  return {
    // one name for every request: a name that changed would make undici close the connection
    dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => upstream.dispatch({ ...opts, servername: host } as Dispatcher.DispatchOptions, handler),
    get closed() {
      return upstream.closed;
    },
    close: () => upstream.close(),
    destroy: () => upstream.destroy(),
  };
}
