/**
 * Message ids in the gateway's two styles (docs/protocol.md section 3), each unique per client:
 * `iso8601`, UTC with nine fraction digits and strictly increasing; `short`, `[a-z0-9]{5}` from a
 * counter started at a random point, unique for 36**5 ids in a row (as wsa_fast/ids.py makes them).
 */

export type IdStyle = "iso8601" | "short";

const SHORT_SPACE = 36 ** 5;

/**
 * Date.now() gives milliseconds; the six digits below them count ids within one millisecond,
 * so ids stay distinct and ordered at any rate (a millisecond that overflows borrows the next).
 */
function iso8601(): () => string {
  let lastMs = 0;
  let within = 0;
  let second = -1;
  let prefix = "";
  return () => {
    const now = Date.now();
    if (now > lastMs) {
      lastMs = now;
      within = 0;
    } else if (++within === 1_000_000) {
      lastMs += 1;
      within = 0;
    }
    const s = Math.floor(lastMs / 1000);
    if (s !== second) {
      second = s;
      prefix = new Date(s * 1000).toISOString().slice(0, 19) + ".";
    }
    const nanos = (lastMs - s * 1000) * 1_000_000 + within;
    return prefix + String(1_000_000_000 + nanos).slice(1) + "Z";
  };
}

function short(): () => string {
  let counter = randomBelow(SHORT_SPACE);
  return () => {
    counter = (counter + 1) % SHORT_SPACE;
    return counter.toString(36).padStart(5, "0");
  };
}

function randomBelow(n: number): number {
  const word = new Uint32Array(1);
  globalThis.crypto.getRandomValues(word);
  return word[0]! % n;
}

/** A new id generator of `style`. */
export function idFactory(style: IdStyle): () => string {
  if (style === "iso8601") return iso8601();
  if (style === "short") return short();
  throw new TypeError(`unknown id style ${JSON.stringify(style)}: expected "iso8601" or "short"`);
}
