#!/usr/bin/env node
import { stripControl } from "../core/security.ts";
import { UserError } from "../core/errors.ts";
import { HelpRequested } from "./command.ts";
import { commands } from "./commands.ts";

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "gpuop: installs the NVIDIA GPU driver on every GPU node of a Kubernetes cluster and keeps it there.",
    "",
    "Usage: gpuop <command> [flags]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`),
    "",
    "Run 'gpuop <command> --help' for a command's flags.",
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help());
    return name === undefined ? 2 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`gpuop: unknown command "${stripControl(name, { newlines: false })}"\n\n${help()}`);
    return 2;
  }
  // `gpuop <command> --help`; a subcommand's own --help reaches its flag parser.
  if (rest[0] === "--help" || rest[0] === "-h") {
    process.stdout.write(command.usage + "\n");
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage.trimEnd() + "\n");
      return 0;
    }
    if (err instanceof UserError) {
      process.stderr.write(`gpuop ${name}: ${stripControl(err.message)}\n`);
      return err.exitCode;
    }
    // An unexpected failure: still one readable line, the stack only on request.
    const e = err as Error;
    // Messages can quote registry or cluster text: no escape sequences reach the terminal.
    process.stderr.write(`gpuop ${name}: ${stripControl(e.message ?? String(err))}\n`);
    if (process.env.GPUOP_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { process.stderr.write(`gpuop: ${String(err)}\n`); process.exitCode = 1; },
);
