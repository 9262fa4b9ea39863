import { createRequire } from "node:module";
import type { Command } from "./command.ts";

const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };

export const versionCommand: Command = {
  name: "version",
  summary: "Print gpuop's version",
  usage: "Usage: gpuop version",
  async run() {
    process.stdout.write(`gpuop ${pkg.version}\n`);
    return 0;
  },
};
