import type { Command } from "./command.ts";
import { versionCommand } from "./version.ts";

/** Every top-level gpuop command, in the order `gpuop --help` lists them. */
export const commands: Command[] = [versionCommand];
