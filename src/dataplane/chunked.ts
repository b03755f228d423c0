/**
 * The chunked request body framing (RFC 9112 §7.1) for the raw front (front.ts), decoded as it
 * arrives and handed on as slices of the socket's reads (no copy). Why not llhttp, which the
 * front parses heads with: once it has parsed a body it goes straight on into the next pipelined
 * request's head in the same call, and tells no offset where the body ended, so the front could
 * not keep that request for its turn. The grammar is held as strictly as llhttp's default mode:
 * CRLF line ends only (a bare CR or LF is an error), no whitespace around the size, at most 16
 * hex digits, extensions and trailer fields without control characters, trailers bounded.
 */

/** decoder states (type stripping has no enums) */
const S = { Size: 0, SizeMore: 1, Ext: 2, SizeLf: 3, Data: 4, DataCr: 5, DataLf: 6, TrailerStart: 7, TrailerLine: 8, TrailerLf: 9, EndLf: 10 } as const;
type State = (typeof S)[keyof typeof S];

/** Trailer section bytes accepted (node:http's header limit); the trailers themselves are dropped, as node:http's path drops them. */
const MAX_TRAILERS = 16 * 1024;
const MAX_SIZE_DIGITS = 16;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** RFC 9110 §5.6.2 tchar: what a trailer field name starts with. */
function isTchar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(c));
}

/** A byte allowed inside an extension or a trailer line: visible, SP, HTAB, obs-text; no CTL. */
function isLineByte(c: number): boolean {
  return c === 9 || (c >= 32 && c !== 127);
}

export const CHUNKED_ERROR = -2;
export const CHUNKED_MORE = -1;

export class ChunkedDecoder {
  private state: State = S.Size;
  private size = 0;
  private digits = 0;
  private trailerBytes = 0;
  /** why the last feed failed */
  reason = '';

  /**
   * Decodes `buf` from `from` on, calling `data` with each span of body bytes. Returns the index
   * just past the body's last byte when the body ended in `buf`, CHUNKED_MORE when all of it was
   * body framing still going on, CHUNKED_ERROR on a framing error (`reason`).
   */
  feed(buf: Buffer, from: number, data: (chunk: Buffer) => void): number {
    let i = from;
    const n = buf.length;
    while (i < n) {
      const c = buf[i] as number;
      switch (this.state) {
        case S.Size:
        case S.SizeMore: {
          const h = hexValue(c);
          if (h !== -1) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size too long');
            this.size = this.size * 16 + h;
            this.state = S.SizeMore;
          } else if (this.state === S.Size) return this.fail('invalid character in chunk size');
          else if (c === 59 /* ; */) this.state = S.Ext;
          else if (c === 13) this.state = S.SizeLf;
          else return this.fail('invalid character in chunk size');
          if (this.size > Number.MAX_SAFE_INTEGER) return this.fail('chunk size too large');
          i++;
          break;
        }
        case S.Ext:
          if (c === 13) this.state = S.SizeLf;
          else if (!isLineByte(c)) return this.fail('invalid character in chunk extension');
          i++;
          break;
        case S.SizeLf:
          if (c !== 10) return this.fail('chunk size line without LF');
          i++;
          this.digits = 0;
          this.state = this.size === 0 ? S.TrailerStart : S.Data;
          break;
        case S.Data: {
          const take = Math.min(this.size, n - i);
          data(i === 0 && take === n ? buf : buf.subarray(i, i + take));
          this.size -= take;
          i += take;
          if (this.size === 0) this.state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (c !== 13) return this.fail('chunk data not followed by CRLF');
          this.state = S.DataLf;
          i++;
          break;
        case S.DataLf:
          if (c !== 10) return this.fail('chunk data not followed by CRLF');
          this.state = S.Size;
          i++;
          break;
        case S.TrailerStart:
          if (c === 13) this.state = S.EndLf;
          else if (isTchar(c)) this.state = S.TrailerLine;
          else return this.fail('invalid trailer field');
          i++;
          if (++this.trailerBytes > MAX_TRAILERS) return this.fail('trailers too large');
          break;
        case S.TrailerLine:
          if (c === 13) this.state = S.TrailerLf;
          else if (!isLineByte(c)) return this.fail('invalid character in a trailer field');
          i++;
          if (++this.trailerBytes > MAX_TRAILERS) return this.fail('trailers too large');
          break;
        case S.TrailerLf:
          if (c !== 10) return this.fail('trailer line without LF');
          this.state = S.TrailerStart;
          i++;
          break;
        case S.EndLf:
          if (c !== 10) return this.fail('chunked body end without LF');
          return i + 1;
      }
    }
    return CHUNKED_MORE;
  }

  private fail(reason: string): number {
    this.reason = reason;
    return CHUNKED_ERROR;
  }
}
