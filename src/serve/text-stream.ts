/**
 * A row's tokens → the text a client sees, as it grows. Each new token is decoded together with
 * the token before it and only the difference is taken (so a tokenizer's spaces and "##" joins
 * come out as in a whole decode, at a constant cost per token); text that may be the start of a
 * stop string, or an unfinished multi-byte character, is held back until it is decided.
 */
export interface Detokenizer {
  decode(ids: number[], skipSpecial?: boolean): string;
}

export class TextStream {
  private readonly tok: Detokenizer;
  private readonly stops: string[];
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  /** decoded text so far */
  private text = "";
  /** characters of `text` already handed out */
  private sent = 0;
  private ended = false;

  constructor(tok: Detokenizer, stops: string[]) {
    this.tok = tok;
    this.stops = stops;
  }

  /** Add a token; returns the text that can be shown now, and whether a stop string ended the reply. */
  push(token: number): { delta: string; stopped: boolean } {
    if (this.ended) return { delta: "", stopped: true };
    this.ids.push(token);
    const before = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset), true);
    const now = this.tok.decode(this.ids.slice(this.prefixOffset), true);
    if (now.length > before.length && !now.endsWith("\uFFFD") && now.startsWith(before)) {
      this.text += now.slice(before.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
    }
    const at = this.firstStop();
    if (at >= 0) {
      this.text = this.text.slice(0, at);
      this.ended = true;
      return { delta: this.take(at), stopped: true };
    }
    return { delta: this.take(this.text.length - this.heldBack()), stopped: false };
  }

  /** The end of the reply: whatever was held back (an unfinished character is decoded as is). */
  finish(): string {
    if (!this.ended) {
      const rest = this.tok.decode(this.ids.slice(this.prefixOffset), true);
      const before = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset), true);
      if (rest.startsWith(before)) this.text += rest.slice(before.length);
      this.ended = true;
    }
    return this.take(this.text.length);
  }

  /** The whole reply so far. */
  get content(): string {
    return this.text;
  }

  private take(upTo: number): string {
    if (upTo <= this.sent) return "";
    const d = this.text.slice(this.sent, upTo);
    this.sent = upTo;
    return d;
  }

  private firstStop(): number {
    let best = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, this.sent - s.length));
      if (i >= 0 && (best < 0 || i < best)) best = i;
    }
    return best;
  }

  /** Length of the longest end of the text that is the start of a stop string. */
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stops)
      for (let n = Math.min(s.length - 1, this.text.length); n > hold; n--)
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
    return hold;
  }
}
