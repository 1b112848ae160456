// `kiln launch`: starts a script on N processes through the system's MPI launcher (Open MPI's mpirun or MPICH's
// Hydra mpiexec) with the flags kiln needs: no core binding (kiln runs its own thread pool; mpirun would pin
// each rank to one core), KILN_NUM_THREADS = cores / ranks on one host, root allowed, interfaces pinned. It
// forwards SIGINT/SIGTERM and exits with the job's exit code.
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

export const LAUNCH_HELP = `  launch -np N [--hostfile F | -H host1:slots,host2:slots] [--threads T] [--iface IF]
         [--node-arg ARG ...] [--mpirun PATH] [--dry-run] script.js [args...]
                  run a script on N processes with MPI (kn.distributed); .ts scripts run through tsx
`;

/** Which MPI a launcher belongs to, from its --version output. */
export function launcherFlavor(versionText: string): 'openmpi' | 'mpich' | null {
  if (/Open MPI|OpenRTE/i.test(versionText)) return 'openmpi';
  if (/HYDRA|MPICH|Intel\(R\) MPI/i.test(versionText)) return 'mpich';
  return null;
}

/** What `kiln launch` was asked to do. */
export interface LaunchPlan {
  np: number;
  hostfile?: string;
  hosts?: string;
  threads?: number;
  iface?: string;
  nodeArgs: string[];
  script: string;
  args: string[];
}

/** The launcher command line and environment for a plan (pure: tested without running anything). */
export function launchCommand(
  plan: LaunchPlan,
  flavor: 'openmpi' | 'mpich',
  mpirun: string,
  env: NodeJS.ProcessEnv = process.env,
  cores = availableParallelism(),
  isRoot = process.getuid?.() === 0,
): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  const multiHost = plan.hostfile !== undefined || plan.hosts !== undefined;
  const threads = plan.threads ?? (multiHost ? undefined : Math.max(1, Math.floor(cores / plan.np)));
  const childEnv: NodeJS.ProcessEnv = { ...env };
  if (threads !== undefined) childEnv.KILN_NUM_THREADS = String(threads);
  const node = [...plan.nodeArgs];
  if (/\.(c|m)?ts$/.test(plan.script) && !node.some((a) => a.includes('tsx'))) node.push('--import', 'tsx');
  const prog = [process.execPath, ...node, plan.script, ...plan.args];
  const forward = Object.keys(childEnv)
    .filter((k) => k.startsWith('KILN_') || k === 'NODE_OPTIONS')
    .sort();
  const args: string[] = ['-np', String(plan.np)];
  if (flavor === 'openmpi') {
    if (isRoot) {
      childEnv.OMPI_ALLOW_RUN_AS_ROOT = '1';
      childEnv.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
    }
    args.push('--bind-to', 'none');
    if (!multiHost && plan.np > cores) args.push('--oversubscribe');
    if (plan.hostfile) args.push('--hostfile', plan.hostfile);
    if (plan.hosts) args.push('-H', plan.hosts);
    if (plan.iface) args.push('--mca', 'btl_tcp_if_include', plan.iface, '--mca', 'oob_tcp_if_include', plan.iface);
    for (const k of forward) args.push('-x', k);
  } else {
    args.push('-bind-to', 'none');
    if (plan.hostfile) args.push('-f', plan.hostfile);
    if (plan.hosts) args.push('-hosts', plan.hosts);
    if (plan.iface) args.push('-iface', plan.iface);
    if (forward.length) args.push('-genvlist', forward.join(','));
  }
  return { cmd: mpirun, args: [...args, ...prog], env: childEnv };
}

/** kiln's own options and the script (argv ends at the script; what follows it is the script's). */
function parse(argv: string[]): Omit<LaunchPlan, 'args'> & { mpirun?: string; dryRun: boolean } {
  // mpirun spells it -np; node's parseArgs wants --np
  const norm = argv.map((a) => (a === '-np' || a === '-n' ? '--np' : a));
  const { values, positionals } = parseArgs({
    args: norm,
    options: {
      np: { type: 'string' },
      hostfile: { type: 'string' },
      H: { type: 'string', short: 'H' },
      threads: { type: 'string' },
      iface: { type: 'string' },
      'node-arg': { type: 'string', multiple: true },
      mpirun: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const np = Number(values.np ?? 'NaN');
  if (!Number.isInteger(np) || np < 1) throw new Error(`launch needs -np N with N >= 1, got ${values.np ?? 'none'}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1))
    throw new Error(`--threads must be a positive integer, got ${values.threads}`);
  if (values.hostfile && values.H) throw new Error('give --hostfile or -H, not both');
  const [script] = positionals;
  if (!script) throw new Error('launch needs the script to run');
  return {
    np,
    hostfile: values.hostfile,
    hosts: values.H,
    threads,
    iface: values.iface,
    nodeArgs: values['node-arg'] ?? [],
    script,
    mpirun: values.mpirun,
    dryRun: values['dry-run'] ?? false,
  };
}

/** Runs `kiln launch`; resolves to the exit code. */
export async function launchCommandLine(argv: string[]): Promise<number> {
  // everything after the script belongs to the script: split there before parsing kiln's own options
  const scriptAt = argv.findIndex((a, i) => !a.startsWith('-') && !isOptionValue(argv, i));
  const own = scriptAt < 0 ? argv : argv.slice(0, scriptAt + 1);
  const rest = scriptAt < 0 ? [] : argv.slice(scriptAt + 1);
  const plan = { ...parse(own), args: rest };
  const mpirun = plan.mpirun ?? process.env.KILN_MPIRUN ?? 'mpirun';
  const v = spawnSync(mpirun, ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) {
    process.stderr.write(
      `kiln launch: '${mpirun}' was not found or failed. Install an MPI (Debian/Ubuntu: ` +
        `apt-get install -y openmpi-bin libopenmpi-dev), then 'npx kiln build --mpi' so kn.distributed is built with it.\n`,
    );
    return 127;
  }
  const flavor = launcherFlavor(`${v.stdout}${v.stderr}`);
  if (!flavor) {
    process.stderr.write(`kiln launch: '${mpirun} --version' names neither Open MPI nor MPICH; use --mpirun\n`);
    return 2;
  }
  const c = launchCommand(plan, flavor, mpirun);
  if (plan.dryRun) {
    const shown = Object.entries(c.env)
      .filter(([k, val]) => (k.startsWith('KILN_') || k.startsWith('OMPI_ALLOW')) && process.env[k] !== val)
      .map(([k, val]) => `${k}=${val}`);
    process.stdout.write([...shown, c.cmd, ...c.args].join(' ') + '\n');
    return 0;
  }
  return await new Promise<number>((resolve) => {
    const child = spawn(c.cmd, c.args, { stdio: 'inherit', env: c.env });
    const fwd = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGINT', fwd);
    process.on('SIGTERM', fwd);
    child.on('error', (e) => {
      process.stderr.write(`kiln launch: ${e.message}\n`);
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', fwd);
      process.off('SIGTERM', fwd);
      const rc = code ?? (signal ? 128 + (signal === 'SIGINT' ? 2 : 15) : 1);
      if (rc !== 0) process.stderr.write(`kiln launch: the job failed (exit code ${rc})\n`);
      resolve(rc);
    });
  });
}

const VALUED = new Set(['-np', '-n', '--np', '--hostfile', '-H', '--threads', '--iface', '--node-arg', '--mpirun']);
function isOptionValue(argv: string[], i: number): boolean {
  return i > 0 && VALUED.has(argv[i - 1]!) && !argv[i - 1]!.includes('=');
}
