// What an operator process costs, read from /proc (Linux): CPU seconds and memory.
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User plus system CPU seconds in a `stat` line of a process or one of its threads. */
function statCpuSeconds(stat: string): number {
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** User plus system CPU seconds the process has used so far. */
export const cpuSeconds = (pid: number): number => statCpuSeconds(readFileSync(`/proc/${pid}/stat`, "utf8"));

function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

/** Peak resident memory (VmHWM) in MiB. */
export const peakRssMiB = (pid: number) => Math.round(statusKiB(pid, "VmHWM") / 1024);
/**
 * Resident memory now by backing, in MiB: anonymous (the V8 heap, malloc, stacks: this process's
 * own) and file-backed (pages of the `node` binary and its libraries, shared with every process
 * that maps them, and reclaimable under memory pressure).
 */
export const rssByBacking = (pid: number) => ({ anon: Math.round(statusKiB(pid, "RssAnon") / 1024), file: Math.round(statusKiB(pid, "RssFile") / 1024) });
/** Resident memory now (VmRSS) in MiB. */
export const rssMiB = (pid: number) => Math.round(statusKiB(pid, "VmRSS") / 1024);

/**
 * CPU seconds so far by kind of thread: the main thread (JavaScript, the event loop), V8's workers
 * (the garbage collector's parallel and concurrent marking, compilers) and the rest (libuv's pool).
 * Threads that ended are counted in none: read it while the process runs.
 */
export function cpuByThread(pid: number): { main: number; v8: number; other: number } {
  const out = { main: 0, v8: 0, other: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended in between
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const s = statCpuSeconds(stat);
    if (Number(tid) === pid) out.main += s;
    else if (comm.startsWith("V8")) out.v8 += s; // "V8Worker"
    else out.other += s;
  }
  return out;
}
