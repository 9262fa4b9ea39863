/**
 * Errors a user can fix. The CLI prints only the message (no stack trace),
 * so the message must name the bad input and say what to do instead.
 */
export class UserError extends Error {
  override name = "UserError";
  /** Process exit status the CLI uses for this error. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}
