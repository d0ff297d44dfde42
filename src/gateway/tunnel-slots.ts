// Tunnels per token: a token may hold at most `perToken` tunnels open at once, plain and inspected
// alike (threat: one leaked or looping token holding every connection the gateway can keep). The
// slot is taken when the CONNECT is decided, not once the upstream answers: a burst of CONNECTs
// must not all pass the check before any of them counts.
export class TunnelSlots {
  readonly #open = new Map<string, number>();

  constructor(readonly perToken: number) {}

  /** A release function (idempotent) when the token has a slot left, else null. */
  take(jti: string): (() => void) | null {
    const open = this.#open.get(jti) ?? 0;
    if (open >= this.perToken) return null;
    this.#open.set(jti, open + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.#open.get(jti) ?? 1) - 1;
      if (left <= 0) this.#open.delete(jti);
      else this.#open.set(jti, left);
    };
  }

  /** Tunnels the token holds now. */
  held(jti: string): number {
    return this.#open.get(jti) ?? 0;
  }
}
