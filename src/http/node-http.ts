// node:http through require, not an ES import. An ES import of a built-in module builds its
// namespace by reading every export, and node:http's WebSocket, CloseEvent and MessageEvent are
// lazy getters that load Node's bundled undici: 13 MiB of resident memory in a bare process, 5 in
// the operator's (its source and compiled top level), for code gpuop never calls. require()
// leaves the getters unread.
import { createRequire } from "node:module";

const http: typeof import("node:http") = createRequire(import.meta.url)("node:http");

export default http;
