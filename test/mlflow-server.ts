// An MLflow tracking server for the tests: the REST API 2.0 routes kiln's mirror uses, with MLflow's answers and
// error codes (RESOURCE_DOES_NOT_EXIST 404, RESOURCE_ALREADY_EXISTS / INVALID_PARAMETER_VALUE 400, log-batch
// limits, params that cannot change, an identical metric point stored once), the mlflow-artifacts proxy for
// uploads, optional bearer-token auth, and fault injection: answer 503 for the next n requests, or do a route's
// work and then drop the connection before answering (a lost response). PyPI is out of reach here, so the real server
// cannot be installed; this one follows mlflow/server/handlers.py and the REST API reference.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRun {
  id: string;
  experimentId: string;
  name: string;
  status: string;
  startTime: number;
  endTime: number | null;
  params: Map<string, string>;
  tags: Map<string, string>;
  metrics: Map<string, { value: number | string; timestamp: number; step: number }[]>;
}

export class MlflowTestServer {
  readonly experiments = new Map<string, string>(); // name -> id
  readonly runs = new Map<string, FakeRun>();
  readonly artifacts = new Map<string, Buffer>(); // path under the artifact root -> bytes
  readonly log: string[] = [];
  token: string | null = null;
  /** answer 503 to this many requests */
  fail = 0;
  /** routes (path after /api/2.0/mlflow/) whose next request is handled, then answered by a dropped connection */
  readonly lose = new Set<string>();
  private server: Server | null = null;
  port = 0;
  private nextId = 1;

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((ok, bad) => {
      this.server!.once('error', bad);
      this.server!.listen(port, '127.0.0.1', ok);
    });
    this.port = (this.server.address() as AddressInfo).port;
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((ok) => s.close(() => ok()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://x');
    this.log.push(`${req.method} ${url.pathname}`);
    const send = (status: number, obj: unknown): void => {
      const route = url.pathname.replace('/api/2.0/mlflow/', '');
      if (this.lose.delete(route)) {
        res.socket?.destroy();
        return;
      }
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    const err = (status: number, code: string, message: string): void => send(status, { error_code: code, message });
    if (this.fail > 0) {
      this.fail--;
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('Service Unavailable');
      return;
    }
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`)
      return err(401, 'UNAUTHENTICATED', 'missing or wrong token');
    const p = url.pathname;
    if (req.method === 'PUT' && p.startsWith('/api/2.0/mlflow-artifacts/artifacts/')) {
      this.artifacts.set(decodeURIComponent(p.slice('/api/2.0/mlflow-artifacts/artifacts/'.length)), body);
      return send(200, {});
    }
    let j: Record<string, unknown> = {};
    if (req.method === 'POST') {
      try {
        j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        return err(400, 'MALFORMED_REQUEST', 'body is not JSON');
      }
    }
    const run = (): FakeRun | null => {
      const r = this.runs.get(String(j.run_id));
      if (!r) err(404, 'RESOURCE_DOES_NOT_EXIST', `Run with id=${String(j.run_id)} not found`);
      return r ?? null;
    };
    switch (`${req.method} ${p}`) {
      case 'GET /api/2.0/mlflow/experiments/get-by-name': {
        const name = url.searchParams.get('experiment_name') ?? '';
        const id = this.experiments.get(name);
        if (id === undefined)
          return err(404, 'RESOURCE_DOES_NOT_EXIST', `Could not find experiment with name '${name}'`);
        return send(200, { experiment: { experiment_id: id, name, lifecycle_stage: 'active' } });
      }
      case 'POST /api/2.0/mlflow/experiments/create': {
        const name = String(j.name ?? '');
        if (!name) return err(400, 'INVALID_PARAMETER_VALUE', "Missing value for required parameter 'name'");
        if (this.experiments.has(name))
          return err(400, 'RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists.`);
        const id = String(this.nextId++);
        this.experiments.set(name, id);
        return send(200, { experiment_id: id });
      }
      case 'POST /api/2.0/mlflow/runs/search': {
        const m = /^tags\.`([^`]+)` = '([^']*)'$/.exec(String(j.filter ?? ''));
        const ids = (j.experiment_ids as string[]) ?? [];
        const hits = [...this.runs.values()].filter(
          (r) => ids.includes(r.experimentId) && (!m || r.tags.get(m[1]!) === m[2]),
        );
        return send(
          200,
          hits.length ? { runs: hits.slice(0, Number(j.max_results ?? 1000)).map((r) => this.info(r)) } : {},
        );
      }
      case 'POST /api/2.0/mlflow/runs/create': {
        const exp = String(j.experiment_id ?? '');
        if (![...this.experiments.values()].includes(exp))
          return err(404, 'RESOURCE_DOES_NOT_EXIST', `No Experiment with id=${exp} exists`);
        const id = `srv${String(this.nextId++).padStart(29, '0')}`;
        const r: FakeRun = {
          id,
          experimentId: exp,
          name: String(j.run_name ?? ''),
          status: 'RUNNING',
          startTime: Number(j.start_time),
          endTime: null,
          params: new Map(),
          tags: new Map(((j.tags as { key: string; value: string }[]) ?? []).map((t) => [t.key, t.value])),
          metrics: new Map(),
        };
        this.runs.set(id, r);
        return send(200, { run: this.info(r) });
      }
      case 'POST /api/2.0/mlflow/runs/log-batch': {
        const r = run();
        if (!r) return;
        const metrics = (j.metrics as { key: string; value: number | string; timestamp: number; step: number }[]) ?? [];
        const params = (j.params as { key: string; value: string }[]) ?? [];
        const tags = (j.tags as { key: string; value: string }[]) ?? [];
        if (
          metrics.length > 1000 ||
          params.length > 100 ||
          tags.length > 100 ||
          metrics.length + params.length + tags.length > 1000
        )
          return err(
            400,
            'INVALID_PARAMETER_VALUE',
            'A batch logging request can contain at most 1000 metrics, 100 params, 100 tags',
          );
        for (const q of params) {
          const old = r.params.get(q.key);
          if (old !== undefined && old !== q.value)
            return err(
              400,
              'INVALID_PARAMETER_VALUE',
              `Changing param values is not allowed. Param with key='${q.key}' was already logged with value='${old}' for run ID='${r.id}'. Attempted logging new value '${q.value}'.`,
            );
        }
        for (const q of params) r.params.set(q.key, q.value);
        for (const t of tags) r.tags.set(t.key, t.value);
        for (const m of metrics) {
          if (typeof m.value !== 'number' && !['NaN', 'Infinity', '-Infinity'].includes(m.value))
            return err(400, 'INVALID_PARAMETER_VALUE', `metric ${m.key}: value ${String(m.value)} is not a double`);
          const pts = r.metrics.get(m.key) ?? [];
          if (!pts.some((q) => q.timestamp === m.timestamp && q.step === m.step && q.value === m.value))
            pts.push({ value: m.value, timestamp: m.timestamp, step: m.step });
          r.metrics.set(m.key, pts);
        }
        return send(200, {});
      }
      case 'POST /api/2.0/mlflow/runs/update': {
        const r = run();
        if (!r) return;
        r.status = String(j.status);
        r.endTime = Number(j.end_time);
        return send(200, { run_info: this.info(r).info });
      }
      default:
        return err(404, 'ENDPOINT_NOT_FOUND', `no route ${req.method} ${p}`);
    }
  }

  private info(r: FakeRun): { info: Record<string, unknown> } {
    return {
      info: {
        run_id: r.id,
        run_uuid: r.id,
        experiment_id: r.experimentId,
        run_name: r.name,
        status: r.status,
        start_time: r.startTime,
        artifact_uri: `mlflow-artifacts:/${r.experimentId}/${r.id}/artifacts`,
        lifecycle_stage: 'active',
      },
    };
  }
}
