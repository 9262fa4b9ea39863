import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../core/errors.ts";
import { ExecPlugin, parseExecCredential } from "./exec-credential.ts";
import { ALLOW_HTTP_CREDENTIALS_ENV, fromKubeconfig } from "./kubeconfig.ts";

const dir = mkdtempSync(join(tmpdir(), "gpuop-kubeconfig-"));
let n = 0;
function kubeconfig(text: string): string {
  const p = join(dir, `config-${n++}.yaml`);
  writeFileSync(p, text);
  return p;
}
const config = (server: string, user: string) => `apiVersion: v1
kind: Config
current-context: c
clusters: [{name: k, cluster: {server: "${server}", extensions: [{name: client.authentication.k8s.io/exec, extension: {audience: test-audience}}]}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: ${user}}]
`;

function throwsUserError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof UserError && re.test(err.message));
}

test("a malformed kubeconfig ends in a message naming the file and what is wrong, not a TypeError", () => {
  throwsUserError(() => fromKubeconfig(kubeconfig("")), /is not a kubeconfig/);
  throwsUserError(() => fromKubeconfig(kubeconfig("just a string")), /is not a kubeconfig/);
  throwsUserError(() => fromKubeconfig(kubeconfig("clusters: {a: 1}")), /clusters must be a list/);
  throwsUserError(() => fromKubeconfig(kubeconfig("clusters: [{name: k, cluster: {}}]")), /clusters\[0\] \("k"\) has no server/);
  throwsUserError(() => fromKubeconfig(kubeconfig("clusters: [{name: k, cluster: {server: 7}}]")), /has no server/);
  throwsUserError(() => fromKubeconfig(kubeconfig("users: [{user: {}}]")), /users\[0\] needs a name/);
  throwsUserError(() => fromKubeconfig(kubeconfig("contexts: [{name: c, context: [1]}]")), /contexts\[0\].context must be a mapping/);
  throwsUserError(() => fromKubeconfig(kubeconfig("a: [unclosed")), /cannot read kubeconfig/);
  throwsUserError(() => fromKubeconfig(kubeconfig(config("https://h:6443", "{}").replace("current-context: c", "current-context: nope"))), /no context "nope"/);
  throwsUserError(() => fromKubeconfig(join(dir, "absent.yaml")), /cannot read kubeconfig/);
});

test("credentials are not sent to a plain-http API server unless explicitly allowed", () => {
  const withToken = kubeconfig(config("http://10.0.0.1:8080", "{token: abc}"));
  const withBasic = kubeconfig(config("http://10.0.0.1:8080", "{username: a, password: b}"));
  const anonymous = kubeconfig(config("http://127.0.0.1:8080", "{}"));
  throwsUserError(() => fromKubeconfig(withToken), /plain http.*https:\/\/.*GPUOP_ALLOW_HTTP_CREDENTIALS=1/);
  throwsUserError(() => fromKubeconfig(withBasic), /plain http/);
  assert.equal(fromKubeconfig(anonymous).server, "http://127.0.0.1:8080");
  assert.equal(fromKubeconfig(kubeconfig(config("https://10.0.0.1:6443", "{token: abc}"))).token, "abc");
  process.env[ALLOW_HTTP_CREDENTIALS_ENV] = "1";
  try {
    assert.equal(fromKubeconfig(withToken).token, "abc");
  } finally {
    delete process.env[ALLOW_HTTP_CREDENTIALS_ENV];
  }
});

test("exec entries are checked when the kubeconfig is read", () => {
  const exec = (e: string) => fromKubeconfig(kubeconfig(config("https://h:6443", `{exec: ${e}}`)));
  throwsUserError(() => exec("{apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}"), /exec.command is missing/);
  throwsUserError(() => exec("{apiVersion: client.authentication.k8s.io/v1alpha1, command: x}"), /apiVersion is "client.authentication.k8s.io\/v1alpha1": use/);
  throwsUserError(() => exec("{apiVersion: client.authentication.k8s.io/v1, command: x}"), /interactiveMode is required/);
  throwsUserError(() => exec("{apiVersion: client.authentication.k8s.io/v1beta1, command: x, interactiveMode: Sometimes}"), /interactiveMode is "Sometimes"/);
  throwsUserError(() => exec("{apiVersion: client.authentication.k8s.io/v1beta1, command: x, env: [{name: A}]}"), /env must be a list/);
  assert.ok(exec("{apiVersion: client.authentication.k8s.io/v1beta1, command: x}").credentials);
});

test("an ExecCredential is checked: kind, apiVersion, a token or a certificate pair, an RFC 3339 expiry", () => {
  const v1 = "client.authentication.k8s.io/v1";
  const cred = (status: unknown, apiVersion = v1) => JSON.stringify({ apiVersion, kind: "ExecCredential", status });
  assert.deepEqual(parseExecCredential(cred({ token: "t", expirationTimestamp: "2030-01-02T03:04:05Z" }), v1), { token: "t", expiresAt: Date.parse("2030-01-02T03:04:05Z") });
  assert.throws(() => parseExecCredential("not json", v1), /not JSON/);
  assert.throws(() => parseExecCredential(cred({ token: "t" }, "client.authentication.k8s.io/v1beta1"), v1), /the kubeconfig asked for/);
  assert.throws(() => parseExecCredential(cred({}), v1), /neither a token nor a client certificate/);
  assert.throws(() => parseExecCredential(cred({ clientCertificateData: "c" }), v1), /only one of/);
  assert.throws(() => parseExecCredential(cred({ token: "t", expirationTimestamp: "tomorrow" }), v1), /not an RFC 3339 time/);
  assert.deepEqual(parseExecCredential(cred({ clientCertificateData: "c", clientKeyData: "k" }), v1), { clientCert: Buffer.from("c"), clientKey: Buffer.from("k") });
});

test("the exec plugin gets KUBERNETES_EXEC_INFO, its env and args; its token is reused until expiry and after invalidate() it runs again", async () => {
  const seen = join(dir, "seen.jsonl");
  const plugin = join(dir, "plugin.sh");
  writeFileSync(
    plugin,
    `#!/bin/sh
printf '{"info":%s,"env":"%s","args":"%s"}\\n' "$KUBERNETES_EXEC_INFO" "$PLUGIN_ENV" "$*" >> ${seen}
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s","expirationTimestamp":"%s"}}' "$(wc -l < ${seen} | tr -d ' ')" "$EXPIRES"
`,
  );
  chmodSync(plugin, 0o755);
  let now = Date.parse("2030-01-01T00:00:00Z");
  process.env.EXPIRES = "2030-01-01T00:01:00Z";
  const p = new ExecPlugin({
    exec: { apiVersion: "client.authentication.k8s.io/v1", command: "./plugin.sh", args: ["--region", "x"], env: [{ name: "PLUGIN_ENV", value: "from-kubeconfig" }], interactiveMode: "IfAvailable", provideClusterInfo: true },
    user: "u",
    baseDir: dir,
    cluster: { server: "https://h:6443", config: { audience: "a" } },
    stdinIsTerminal: false,
    now: () => now,
  });
  try {
    const [a, b] = await Promise.all([p.get(), p.get()]);
    assert.equal(a.token, "tok-1");
    assert.equal(b.token, "tok-1");
    assert.equal(p.runs, 1, "concurrent requests share one run");
    now += 30_000;
    assert.equal((await p.get()).token, "tok-1", "reused before expiry");
    now += 31_000;
    process.env.EXPIRES = "2030-01-01T05:00:00Z";
    assert.equal((await p.get()).token, "tok-2", "asked again after expiry");
    const second = await p.get();
    assert.equal(second.token, "tok-2", "the new token is reused");
    p.invalidate({ token: "tok-1" });
    assert.equal((await p.get()).token, "tok-2", "a 401 for an older token keeps the newer one");
    p.invalidate(second);
    assert.equal((await p.get()).token, "tok-3", "asked again after a 401");
    const first = JSON.parse(readFileSync(seen, "utf8").split("\n")[0]!) as { info: unknown; env: string; args: string };
    assert.deepEqual(first.info, { apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", spec: { interactive: false, cluster: { server: "https://h:6443", config: { audience: "a" } } } });
    assert.equal(first.env, "from-kubeconfig");
    assert.equal(first.args, "--region x");
  } finally {
    delete process.env.EXPIRES;
  }
});

test("a failing or missing plugin says which plugin, why, and its install hint; Always without a terminal is refused", async () => {
  const fail = join(dir, "fail.sh");
  writeFileSync(fail, "#!/bin/sh\necho 'token expired, run: login' >&2\nexit 3\n");
  chmodSync(fail, 0o755);
  const base = { user: "u", baseDir: dir, cluster: { server: "https://h" }, stdinIsTerminal: false };
  const v1 = "client.authentication.k8s.io/v1";
  await assert.rejects(new ExecPlugin({ ...base, exec: { apiVersion: v1, command: fail, interactiveMode: "Never", installHint: "install it" } }).get(), /"\/.*fail.sh" of kubeconfig user "u" failed \(exit 3\): token expired, run: login\ninstall it/);
  await assert.rejects(new ExecPlugin({ ...base, exec: { apiVersion: v1, command: "gpuop-no-such-plugin", interactiveMode: "Never", installHint: "brew install it" } }).get(), /was not found.*\nbrew install it/s);
  await assert.rejects(new ExecPlugin({ ...base, exec: { apiVersion: v1, command: fail, interactiveMode: "Always" } }).get(), /needs a terminal/);
});

test("an oidc auth-provider user gets its id-token from @kubernetes/client-node", async () => {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const idToken = `${b64({ alg: "none" })}.${b64({ iss: "https://issuer.example.com", exp: Math.floor(Date.parse("2099-01-01") / 1000) })}.sig`;
  const access = fromKubeconfig(kubeconfig(config("https://h:6443", `{auth-provider: {name: oidc, config: {client-id: gpuop, idp-issuer-url: "https://issuer.example.com", id-token: "${idToken}"}}}`)));
  assert.ok(access.credentials);
  assert.deepEqual(await access.credentials.get(), { token: idToken });
  throwsUserError(() => fromKubeconfig(kubeconfig(config("http://h:8080", `{auth-provider: {name: oidc, config: {id-token: "${idToken}"}}}`))), /plain http/);
});

test("the kubeconfig reader takes what @kubernetes/client-node takes: context, server, CA, client certificate, TLS options, basic auth", async () => {
  const { KubeConfig } = await import("@kubernetes/client-node");
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const sub = mkdtempSync(join(dir, "refs-"));
  writeFileSync(join(sub, "ca.pem"), "CA FROM FILE");
  writeFileSync(join(sub, "client.crt"), "CERT FROM FILE");
  writeFileSync(join(sub, "client.key"), "KEY FROM FILE");
  const text = `apiVersion: v1
kind: Config
current-context: second
clusters:
- {name: one, cluster: {server: "https://one.example:6443/", certificate-authority-data: ${b64("CA ONE")}}}
- {name: two, cluster: {server: "https://two.example", certificate-authority: ca.pem, tls-server-name: api.two.internal, insecure-skip-tls-verify: true}}
- {name: one, cluster: {server: "https://shadowed.example"}}
contexts:
- {name: first, context: {cluster: one, user: data-user}}
- {name: second, context: {cluster: two, user: file-user}}
- {name: third, context: {cluster: one, user: basic}}
users:
- {name: data-user, user: {client-certificate-data: ${b64("CERT DATA")}, client-key-data: ${b64("KEY DATA")}}}
- {name: file-user, user: {client-certificate: client.crt, client-key: client.key}}
- {name: basic, user: {username: admin, password: s3cret}}
`;
  const path = join(sub, "config");
  writeFileSync(path, text);
  for (const context of [undefined, "first", "second", "third"]) {
    const ours = fromKubeconfig(path, context);
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    if (context) kc.setCurrentContext(context);
    const cluster = kc.getCurrentCluster()!;
    const user = kc.getCurrentUser()!;
    const read = (data?: string, file?: string) => (data ? Buffer.from(data, "base64").toString() : file ? readFileSync(file, "utf8") : undefined);
    const label = `context ${context ?? "(current)"}`;
    assert.equal(ours.server, cluster.server.replace(/\/+$/, ""), label);
    assert.equal(ours.ca?.toString(), read(cluster.caData, cluster.caFile), label);
    assert.equal(ours.clientCert?.toString(), read(user.certData, user.certFile), label);
    assert.equal(ours.clientKey?.toString(), read(user.keyData, user.keyFile), label);
    assert.equal(ours.insecureSkipTLSVerify ?? false, cluster.skipTLSVerify, label);
    assert.equal(ours.tlsServerName, cluster.tlsServerName, label);
    assert.equal(ours.username, user.username, label);
    assert.equal(ours.password, user.password, label);
  }
  // The values themselves, so the comparison above cannot pass with both sides empty.
  const second = fromKubeconfig(path);
  assert.deepEqual([second.server, second.ca?.toString(), second.clientCert?.toString(), second.tlsServerName, second.insecureSkipTLSVerify], ["https://two.example", "CA FROM FILE", "CERT FROM FILE", "api.two.internal", true]);
  assert.equal(fromKubeconfig(path, "first").server, "https://one.example:6443");
  throwsUserError(() => fromKubeconfig(path, "fourth"), /has no context "fourth"/);
});
