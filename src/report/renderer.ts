/** A renderer consumes run events and shows them; swapping it changes nothing else. */
import type { RunEvent } from "../run/events.js";

export interface Renderer {
  onEvent(event: RunEvent): void;
  /** Resolves once everything has been shown. */
  done(): Promise<void>;
}

export const silentRenderer: Renderer = { onEvent: () => {}, done: async () => {} };
