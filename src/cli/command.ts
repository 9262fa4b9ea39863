import { parseArgs, type ParseArgsConfig } from "node:util";
import { stringify as toYaml } from "yaml";
import { UserError } from "../core/errors.ts";

/** One `gpuop` subcommand (possibly with its own subcommands). */
export interface Command {
  name: string;
  summary: string;
  /** Full help text printed for `gpuop <name> --help`. */
  usage: string;
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Thrown by parseFlags for -h/--help: the CLI prints the usage and exits 0. */
export class HelpRequested extends Error {
  override name = "HelpRequested";
  readonly usage: string;
  constructor(usage: string) {
    super("help requested");
    this.usage = usage;
  }
}

/** parseArgs with gpuop's conventions: unknown flags become UserErrors naming the flag; -h/--help shows `usage`. */
export function parseFlags<O extends Options>(argv: string[], options: O, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UserError(`${(err as Error).message}\n\n${usage}`);
  }
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(usage);
  return parsed;
}

export type OutputFormat = "table" | "json" | "yaml";

export function outputFormat(value: string | undefined): OutputFormat {
  const v = value ?? "table";
  if (v === "table" || v === "json" || v === "yaml") return v;
  throw new UserError(`unknown output format "${v}": use -o table, -o json or -o yaml`);
}

/** Renders data as JSON or YAML; tables are rendered by the caller. */
export function formatData(data: unknown, format: "json" | "yaml"): string {
  return format === "json" ? JSON.stringify(data, null, 2) + "\n" : toYaml(data);
}

/** Left-aligned columns separated by three spaces, like kubectl. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("   ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
