// Pretty-printed JSON split into coloured tokens for a <pre>: rendered as text nodes, never as HTML.
export interface JsonToken {
  text: string;
  kind: 'key' | 'string' | 'number' | 'literal' | 'punct';
}

const RE = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b|([^"\d\-tfn]+|.)/g;

export function jsonTokens(value: unknown): JsonToken[] {
  const text = JSON.stringify(value, null, 2) ?? 'undefined';
  const out: JsonToken[] = [];
  for (const m of text.matchAll(RE)) {
    if (m[1] !== undefined) {
      out.push({ text: m[1], kind: m[2] ? 'key' : 'string' });
      if (m[2]) out.push({ text: m[2], kind: 'punct' });
    } else if (m[3] !== undefined) out.push({ text: m[3], kind: 'number' });
    else if (m[4] !== undefined) out.push({ text: m[4], kind: 'literal' });
    else out.push({ text: m[0], kind: 'punct' });
  }
  return out;
}
