// `npm run bench [filter]`: runs every bench/**/*.bench.ts (or those whose path contains the filter).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const filter = process.argv[2] ?? '';
const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.bench.ts') && f.includes(filter))
  .sort();
for (const f of files) {
  console.log(`\n=== ${f}`);
  const mod = (await import(pathToFileURL(join(root, f)).href)) as { run: () => Promise<void> };
  await mod.run();
}
