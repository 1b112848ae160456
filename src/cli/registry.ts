// `kiln registry ls|register|promote|rollback|compare|card`: the model registry (kn.registry) from the terminal.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compare, list, promote, register, rollback, type Stage } from '../track/registry.js';

export const REGISTRY_HELP = `  registry ls [NAME] [--dir kiln-registry]            versions, stages, run and metrics
  registry register FILE --name NAME [--version V] [--run RUN_DIR] [--parent NAME@V] [--intended-use TEXT]
                  [--limitations TEXT]                   copy a model file in with its lineage and a model card
  registry promote NAME VERSION staging|production|archived|none
  registry rollback NAME                               production back to the previous production version
  registry compare NAME V1 V2                          final metrics side by side
  registry card NAME VERSION                           print the model card (Markdown)
`;

export function registryCommand(argv: string[]): number {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      dir: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
      run: { type: 'string' },
      parent: { type: 'string' },
      'intended-use': { type: 'string' },
      limitations: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const dir = values.dir === undefined ? {} : { dir: values.dir };
  const need = (n: number, usage: string): void => {
    if (positionals.length !== n) throw new Error(`usage: kiln registry ${usage}`);
  };
  switch (sub) {
    case 'ls': {
      const rows = list(positionals[0], dir);
      if (!rows.length) {
        process.stdout.write('no registered models\n');
        return 0;
      }
      for (const m of rows) {
        const metrics = m.metrics.map((x) => `${x.name}=${x.value.toFixed(4)}`).join(' ');
        process.stdout.write(
          `${m.name}@${m.version}  ${m.stage.padEnd(10)}  run ${m.lineage.run?.id.slice(0, 8) ?? '-'}  ${metrics}\n`,
        );
      }
      return 0;
    }
    case 'register': {
      need(1, 'register FILE --name NAME');
      if (!values.name) throw new Error('register needs --name');
      const m = register(positionals[0]!, {
        name: values.name,
        ...(values.version === undefined ? {} : { version: values.version }),
        ...(values.run === undefined ? {} : { run: values.run }),
        ...(values.parent === undefined ? {} : { parent: values.parent }),
        card: {
          ...(values['intended-use'] === undefined ? {} : { intendedUse: values['intended-use'] }),
          ...(values.limitations === undefined ? {} : { limitations: values.limitations }),
        },
        ...dir,
      });
      process.stdout.write(`registered ${m.name}@${m.version} (sha256 ${m.sha256.slice(0, 12)}) at ${m.path}\n`);
      return 0;
    }
    case 'promote': {
      need(3, 'promote NAME VERSION STAGE');
      const m = promote(positionals[0]!, positionals[1]!, positionals[2]! as Stage, dir);
      process.stdout.write(`${m.name}@${m.version} is now ${m.stage}\n`);
      return 0;
    }
    case 'rollback': {
      need(1, 'rollback NAME');
      const m = rollback(positionals[0]!, dir);
      process.stdout.write(`${m.name}: production is ${m.version} again\n`);
      return 0;
    }
    case 'compare': {
      need(3, 'compare NAME V1 V2');
      const [n, a, b] = positionals as [string, string, string];
      const f = (v: number | null): string => (v === null ? '-' : v.toFixed(4));
      process.stdout.write(`metric  ${a}  ${b}  diff\n`);
      for (const r of compare(n, a, b, dir)) process.stdout.write(`${r.metric}  ${f(r.a)}  ${f(r.b)}  ${f(r.diff)}\n`);
      return 0;
    }
    case 'card': {
      need(2, 'card NAME VERSION');
      const m = list(positionals[0], dir).find((v) => v.version === positionals[1]);
      if (!m) throw new Error(`no model ${positionals[0]}@${positionals[1]}`);
      process.stdout.write(readFileSync(join(m.path, '..', 'MODEL_CARD.md'), 'utf8'));
      return 0;
    }
    default:
      throw new Error(`registry takes ls, register, promote, rollback, compare or card, got ${sub ?? 'nothing'}`);
  }
}
