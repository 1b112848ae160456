// Every reader of outside data under structure-aware fuzzing (scripts/fuzz.ts), a CI-sized run: each case is
// accepted or refused with a KilnError, in child processes that would expose a crash or a hang. The bench-sized
// run (10,000 cases per reader) is `npm run bench fuzz`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { READERS, fuzzReader } from '../scripts/fuzz.js';

for (const reader of READERS) {
  test(`fuzz ${reader}: every mutated input is accepted or refused with a KilnError`, async () => {
    const r = await fuzzReader(reader, reader === 'arrow' ? 60 : 200, 11, 1000, 30_000);
    assert.equal([...r.failures, ...r.crashes, ...r.hangs], []);
    assert.is(r.accepted + r.refused, r.cases);
    assert.ok(r.refused > 0, 'the mutations produce broken inputs');
    assert.ok(r.accepted > 0 || reader === 'arrow', 'and some that are still valid');
  });
}

test('the harness reports other exceptions, crashes and hangs with the case that caused them', async () => {
  const thrown = await fuzzReader('selftest-throw', 40, 1);
  assert.ok(
    thrown.failures.length > 0 && thrown.failures[0]!.includes('TypeError: not a KilnError'),
    thrown.failures[0],
  );
  const crashed = await fuzzReader('selftest-crash', 20, 1);
  assert.ok(
    crashed.crashes.length > 0 && /case \d+: exit null signal SIGSEGV/.test(crashed.crashes[0]!),
    crashed.crashes[0],
  );
  const hung = await fuzzReader('selftest-hang', 30, 1, 1000, 3000);
  assert.ok(hung.hangs.length > 0 && /no progress for 3000 ms/.test(hung.hangs[0]!), hung.hangs[0]);
  // the run goes on after the case that crashed or hung
  assert.ok(crashed.accepted > 0 && hung.accepted > 0);
});

test.run();
