import type { Command } from "./command.ts";
import { operatorCommand } from "./operator.ts";
import { precompiledCommand } from "./precompiled.ts";
import { preflightCommand } from "./preflight.ts";
import { statusCommand } from "./status.ts";
import { versionCommand } from "./version.ts";

/** Every top-level gpuop command, in the order `gpuop --help` lists them. */
export const commands: Command[] = [operatorCommand, statusCommand, precompiledCommand, preflightCommand, versionCommand];
