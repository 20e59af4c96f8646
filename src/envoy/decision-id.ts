// Decision ids: random UUIDs v4, like crypto.randomUUID() (122 bits from the CSPRNG, batched the
// same way), but written as ASCII into one scratch buffer and read out as one string. randomUUID()
// joins 20 short strings per id (~0.6 KB of garbage per Check); this makes only the id (~50 B).
import { randomFillSync } from 'node:crypto';

const BATCH = 128; // ids per CSPRNG call, as node's randomUUID
const pool = Buffer.allocUnsafeSlow(16 * BATCH);
let next = BATCH; // exhausted: fill on first use
const text = Buffer.allocUnsafeSlow(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
text[8] = text[13] = text[18] = text[23] = 0x2d; // '-'

/** A random UUID v4 in its canonical lower-case form, as crypto.randomUUID() gives. */
export function decisionId(): string {
  if (next === BATCH) {
    randomFillSync(pool);
    next = 0;
  }
  const offset = 16 * next++;
  for (let i = 0; i < 16; i++) {
    let byte = pool[offset + i] as number;
    if (i === 6)
      byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // variant 10
    const at = AT[i] as number;
    text[at] = HEX[byte >> 4] as number;
    text[at + 1] = HEX[byte & 0x0f] as number;
  }
  return text.toString('latin1', 0, 36);
}
