/** Undo what a test set up, after each test, even when it failed. */
import { afterEach } from "vitest";
import { tempDir, writeLocalInventory } from "./images.js";

export function deferCleanups(): {
  defer: (undo: () => void) => void;
  workspace: (prefix?: string) => { dir: string; inventory: string };
} {
  const undos: (() => void)[] = [];
  afterEach(() => {
    // Last in, first out: an unmount runs before its directory is removed.
    for (const undo of undos.splice(0).reverse()) undo();
  });
  const defer = (undo: () => void) => {
    undos.push(undo);
  };
  return {
    defer,
    /** A temporary directory with a localhost inventory in it. */
    workspace: (prefix?: string) => {
      const t = tempDir(prefix);
      defer(t.cleanup);
      return { dir: t.dir, inventory: writeLocalInventory(t.dir) };
    },
  };
}
