// `kiln admin ...`: rollout on a running model server through its admin routes (deploy a canary, A/B or shadow
// version, promote, roll back, list versions), and `kiln apikey`, which makes a key and its hashed form.
import { parseArgs } from 'node:util';
import { ArgumentError } from '../errors.js';
import { newApiKey } from '../serve/auth.js';
import { adminRequest } from '../serve/client.js';
import { readFlagFile } from './files.js';

export async function adminCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      ca: { type: 'string' },
      version: { type: 'string' },
      weight: { type: 'string' },
      'sticky-key': { type: 'string' },
      shadow: { type: 'boolean', default: false },
    },
  });
  const [action, arg] = positionals;
  if (!values.url) throw new ArgumentError('admin needs --url of the server (for example http://127.0.0.1:8080)');
  let base: URL;
  try {
    base = new URL(values.url);
  } catch {
    throw new ArgumentError(`--url ${values.url} is not a URL`);
  }
  const token = values.token ?? process.env.KILN_API_KEY;
  const ca = values.ca ? readFlagFile(values.ca, 'ca') : undefined;
  const at = (p: string): URL => new URL(p, base);
  let res: { status: number; body: unknown };
  if (action === 'versions') res = await adminRequest(at('/admin/versions'), 'GET', token, undefined, ca);
  else if (action === 'deploy') {
    if (!arg) throw new ArgumentError('admin deploy needs a model file');
    if (!values.version) throw new ArgumentError('admin deploy needs --version');
    const body: Record<string, unknown> = { path: arg, version: values.version };
    if (values.weight !== undefined) {
      const w = Number(values.weight);
      if (!(w > 0 && w <= 1)) throw new ArgumentError(`--weight must be in (0, 1], got '${values.weight}'`);
      body.weight = w;
    }
    if (values['sticky-key']) body.stickyKey = values['sticky-key'];
    if (values.shadow) body.shadow = true;
    res = await adminRequest(at('/admin/deploy'), 'POST', token, body, ca);
  } else if (action === 'promote') {
    if (!arg) throw new ArgumentError('admin promote needs a version');
    res = await adminRequest(at('/admin/promote'), 'POST', token, { version: arg }, ca);
  } else if (action === 'rollback') res = await adminRequest(at('/admin/rollback'), 'POST', token, {}, ca);
  else throw new ArgumentError(`admin takes versions, deploy, promote or rollback, got ${JSON.stringify(action)}`);
  const out = JSON.stringify(res.body, null, 2) + '\n';
  if (res.status >= 200 && res.status < 300) {
    process.stdout.write(out);
    return 0;
  }
  process.stderr.write(`kiln admin ${action}: HTTP ${res.status}\n${out}`);
  return 1;
}

export function apikeyCommand(argv: string[]): number {
  if (argv.length) throw new ArgumentError('apikey takes no arguments');
  const { token, hashed } = newApiKey();
  process.stdout.write(
    `key:  ${token}\nkeys file entry (holds no secret): "${hashed}": ["predict"]\n` +
      'give the key to the client (Authorization: Bearer <key>); put the entry in the server keys file\n',
  );
  return 0;
}
