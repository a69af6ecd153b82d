// The key of an anonymous client: its IPv4 address, or its IPv6 network (/64 by default), so one
// host cannot rotate through the addresses of its own subnet to escape its limits.
import { isIP, isIPv6 } from 'node:net'

/**
 * The default key of an anonymous request: `ip` (Fastify's `request.ip`) when it is an address, else
 * the peer's. Behind a trusted proxy `ip` comes from X-Forwarded-For, where a client may write
 * anything (`evil`, `1.2.3.4:80`); keying on such a string would let it pick a fresh key per request.
 */
export function anonymousClientKey (ip: string | undefined, peer: string | undefined, prefixBits: number): string {
  return clientKey(isIP(ip ?? '') !== 0 ? ip as string : peer ?? '', prefixBits)
}

/** `ip` as a key: IPv4 (also IPv4-mapped IPv6) as is, IPv6 reduced to its first `prefixBits` bits. */
export function clientKey (ip: string, prefixBits: number): string {
  if (!isIPv6(ip)) return ip
  const groups = expandIPv6(ip)
  if (groups === undefined) return ip
  // ::ffff:a.b.c.d is an IPv4 client behind a dual-stack socket.
  if (groups.slice(0, 5).every(g => g === 0) && groups[5] === 0xffff) {
    return `${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`
  }
  if (prefixBits >= 128) return groups.map(g => g.toString(16)).join(':')
  const kept: number[] = []
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, prefixBits - i * 16))
    kept.push(bits === 0 ? 0 : groups[i] & (0xffff << (16 - bits)) & 0xffff)
  }
  return `${kept.map(g => g.toString(16)).join(':')}/${prefixBits}`
}

/** Eight 16-bit groups of an IPv6 address (zone dropped, embedded IPv4 converted). */
function expandIPv6 (address: string): number[] | undefined {
  let text = address.split('%')[0]
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number)
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head, tail] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const missing = 8 - left.length - right.length
  if (tail === undefined ? missing !== 0 : missing < 0) return undefined
  return [...left, ...Array(tail === undefined ? 0 : missing).fill('0'), ...right].map(g => parseInt(g, 16))
}
