// `npm run bench fuzz`: the bench-sized fuzz run, 10,000 structure-aware cases per reader (scripts/fuzz.ts),
// each chunk of cases in a child process. Prints accepted / refused / other errors / crashes / hangs per reader.
import { READERS, fuzzReader } from '../../scripts/fuzz.js';

export async function run(): Promise<void> {
  const cases = Number(process.env.KILN_FUZZ_CASES ?? 10_000);
  console.log(`## fuzz: ${cases} cases per reader (seed 1)`);
  console.log('reader        cases  accepted  refused  other  crashes  hangs  seconds');
  for (const reader of READERS) {
    const r = await fuzzReader(reader, cases, 1);
    console.log(
      `${reader.padEnd(12)} ${String(r.cases).padStart(6)} ${String(r.accepted).padStart(9)} ${String(r.refused).padStart(8)} ${String(r.failures.length).padStart(6)} ${String(r.crashes.length).padStart(8)} ${String(r.hangs.length).padStart(6)} ${(r.ms / 1000).toFixed(1).padStart(8)}`,
    );
    for (const f of [...r.failures, ...r.crashes, ...r.hangs].slice(0, 5)) console.log('  ' + f);
  }
}
