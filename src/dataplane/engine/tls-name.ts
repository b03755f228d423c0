import { isIP } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Upstream } from './upstream.ts';

/**
 * An https:// target's engine that verifies the target's certificate (and sends SNI) for the
 * host name in the target's URL. Why: the proxy forwards the client's Host, and undici takes the
 * TLS server name from the Host of each request, so without this a target `https://api-1.internal`
 * serving `shop.example.com` would be checked against shop.example.com, a name it need not hold
 * (and each new Host would tear the session down). The name the operator wrote is the one to trust,
 * as curl and nginx's `proxy_ssl_name $proxy_host` do. An IP target is left as it was: an IP is
 * no SNI name, and Node checks an IP only when no server name is given.
 */
export function pinServerName(origin: string, upstream: Upstream): Upstream {
  const u = new URL(origin);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (u.protocol !== 'https:' || isIP(host) !== 0) return upstream;
  return {
    dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => upstream.dispatch({ ...opts, servername: host } as Dispatcher.DispatchOptions, handler),
    get closed() {
      return upstream.closed;
    },
    close: () => upstream.close(),
    destroy: () => upstream.destroy(),
  };
}
