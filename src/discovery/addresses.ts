import { BlockList, isIP } from 'node:net';

/**
 * Addresses a DNS answer may name that no target can have: unspecified, broadcast, multicast,
 * reserved and link-local ranges (RFC 6890), and port 0. Connecting to 0.0.0.0 reaches this very
 * host, a multicast group is no one host, and a link-local address depends on the interface: an
 * answer holding one is a mistake or a poisoned record, never a target. Loopback stays allowed
 * (a sidecar beside the proxy is a real setup).
 */
const UNUSABLE = new BlockList();
UNUSABLE.addSubnet('0.0.0.0', 8, 'ipv4');
UNUSABLE.addSubnet('169.254.0.0', 16, 'ipv4');
UNUSABLE.addSubnet('224.0.0.0', 4, 'ipv4');
UNUSABLE.addSubnet('240.0.0.0', 4, 'ipv4'); // reserved, 255.255.255.255 (broadcast) included
UNUSABLE.addAddress('::', 'ipv6');
UNUSABLE.addSubnet('fe80::', 10, 'ipv6');
UNUSABLE.addSubnet('ff00::', 8, 'ipv6');

/** Why a discovered target URL cannot be a target, or null when it can. */
export function unusableTarget(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (u.port === '0') return 'port 0';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const family = isIP(host);
  if (family === 0) return null; // a name (an SRV target resolved elsewhere): nothing to judge here
  // an IPv4-mapped IPv6 address is judged as the IPv4 address it carries
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host)?.[1] : undefined;
  if (mapped !== undefined) return UNUSABLE.check(mapped, 'ipv4') ? `${mapped} is not a unicast address a target can have` : null;
  return UNUSABLE.check(host, family === 4 ? 'ipv4' : 'ipv6') ? `${host} is not a unicast address a target can have` : null;
}
