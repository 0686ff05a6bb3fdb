// Parse Mermaid files with Mermaid's own parser (the mermaid package, in a jsdom window: no
// browser). Prints each file's diagram type; exits 1 at the first file Mermaid refuses.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(readFileSync(file, "utf8"));
    console.log(`${file}: ${result.diagramType}`);
  } catch (error) {
    console.error(`${file}: ${String(error.message).split("\n").slice(0, 3).join(" ")}`);
    process.exit(1);
  }
}
