/**
 * Stop strings over streamed text: text is released only once it can no longer be the start
 * of a stop string, so a stop string is never half-emitted.
 */
export class StopStringMatcher {
  #pending = '';

  constructor(private readonly stops: readonly string[]) {}

  /**
   * Adds `text`; returns what can be emitted now and whether a stop string was found (the
   * emitted text then ends just before it).
   */
  push(text: string): { emit: string; stopped: boolean } {
    this.#pending += text;
    let cut = -1;
    for (const stop of this.stops) {
      if (!stop) continue;
      const at = this.#pending.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const emit = this.#pending.slice(0, cut);
      this.#pending = '';
      return { emit, stopped: true };
    }
    const hold = this.#heldBack();
    const emit = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    return { emit, stopped: false };
  }

  /** Whatever was held back, at the end of generation. */
  flush(): string {
    const rest = this.#pending;
    this.#pending = '';
    return rest;
  }

  /** Length of the longest suffix of the pending text that is a proper prefix of a stop. */
  #heldBack(): number {
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.#pending.length); n > hold; n--) {
        if (this.#pending.endsWith(stop.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return hold;
  }
}
