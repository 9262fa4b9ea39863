import { UserError } from "../core/errors.ts";

/**
 * What went wrong talking to a registry. Each code has one message shape that
 * says what to fix; callers (the CLI, the controller) branch on the code.
 */
export type RegistryErrorCode =
  | "unauthorized" // 401: no or wrong credentials
  | "denied" // 403: credentials accepted, no access to the repository
  | "not-found" // 404 on a repository
  | "unreachable" // connection refused, DNS failure, reset
  | "timeout" // no answer within the per-request timeout
  | "tls" // certificate not trusted, or http spoken to https
  | "rate-limited" // 429 past the retry budget
  | "server" // 5xx past the retry budget
  | "protocol"; // an answer that does not follow the distribution spec

/**
 * A registry failure a user can act on. Messages never hold credentials: the
 * client passes every message through its redactor before throwing.
 */
export class RegistryError extends UserError {
  override name = "RegistryError";
  readonly code: RegistryErrorCode;
  /** The registry host (host[:port]) the failure came from. */
  readonly registry: string;
  /** HTTP status, when the registry answered at all. */
  readonly status: number | undefined;
  constructor(code: RegistryErrorCode, registry: string, message: string, status?: number) {
    super(message, 1);
    this.code = code;
    this.registry = registry;
    this.status = status;
  }
}
