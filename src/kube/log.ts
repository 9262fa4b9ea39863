/** Structured JSON logs, one object a line, on stderr. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  with(fields: Record<string, unknown>): Logger;
}

export function jsonLogger(base: Record<string, unknown> = {}, out: (line: string) => void = (l) => process.stderr.write(l), debug = !!process.env.GPUOP_DEBUG): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) =>
    out(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...base, ...fields }) + "\n");
  return {
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    debug: (m, f) => (debug ? write("debug", m, f) : undefined),
    with: (f) => jsonLogger({ ...base, ...f }, out, debug),
  };
}

export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
  with: () => silentLogger,
};
