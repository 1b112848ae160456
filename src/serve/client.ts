// A small JSON client for a running model server's routes (the admin API): `kiln admin` and the retraining
// pipeline's canary and promote steps use it. HTTP or HTTPS (with a CA certificate for a private one).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** One JSON request to a model server (its admin routes); resolves to the status and the parsed body. */
export function adminRequest(
  url: URL,
  method: 'GET' | 'POST',
  token: string | undefined,
  body: object | undefined,
  ca: Buffer | undefined,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const data = body ? JSON.stringify(body) : undefined;
  const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((res, rej) => {
    const r = req(
      url,
      {
        method,
        ...(ca ? { ca } : {}),
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
        },
        timeout: 120_000,
      },
      (m) => {
        let text = '';
        m.setEncoding('utf8');
        m.on('data', (c: string) => (text += c));
        m.on('end', () => {
          let b: Record<string, unknown>;
          try {
            b = JSON.parse(text) as Record<string, unknown>;
          } catch {
            b = { text };
          }
          res({ status: m.statusCode ?? 0, body: b });
        });
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${url.href} did not answer in 120 s`)));
    r.on('error', rej);
    r.end(data);
  });
}
